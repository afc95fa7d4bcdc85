# Copyright (c) mmstop contributors. All rights reserved.
"""Pack a video-text sample for a similarity model (``PackVideoTextInputs``).

Data contract (one sample, after the pipeline)::

    packed['inputs']        Tensor, the video: results['imgs'] as a tensor.
                            With FormatShape('NCHW') and T sampled frames it
                            is [T, 3, H, W] (uint8 before the data
                            preprocessor), so a batch is [B, T, 3, H, W].
    packed['data_samples']  ActionDataSample with
        .text_ids           LongTensor [num_captions, L] (a data field, so
                            ``data_sample.to(device)`` moves it). Training:
                            [1, L]; test: all captions of the video.
        metainfo            ``meta_keys`` present in results, by default
                            video_id, filename, sample_idx, video_index,
                            caption_index (train), text (the raw caption
                            strings, in the order of text_ids rows),
                            valid_frames, text_truncated, img_shape.

A model's ``loss(inputs, data_samples)`` typically uses
``torch.cat([ds.text_ids for ds in data_samples])`` ([B, L] in training:
row b belongs to video b). Its ``predict(inputs, data_samples)`` must set,
per data sample, ``video_feature`` (Tensor [D]) and ``text_feature`` (Tensor
[num_captions, D], rows in text_ids order), e.g.
``ds.set_field(vf, 'video_feature')``; that is what
:class:`~mmstop.evaluation.VideoTextRetrievalMetric` reads (together with
the ``sample_idx`` and ``video_index`` metainfo).
"""
from typing import Dict, Sequence

import torch
from mmaction.structures import ActionDataSample
from mmcv.transforms import BaseTransform, to_tensor

from mmstop.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackVideoTextInputs(BaseTransform):
    """Pack the video as ``inputs`` and the caption ids in the data sample.

    See the module docstring for the exact contract.

    Args:
        video_key (str): Key of the decoded frames. Defaults to ``'imgs'``.
        text_key (str): Key of the caption ids (from ``TokenizeText``);
            stored under the same name in the data sample. Defaults to
            ``'text_ids'``.
        meta_keys (Sequence[str]): Keys copied to the metainfo when present.
            Defaults to ``('video_id', 'filename', 'sample_idx',
            'video_index', 'caption_index', 'text', 'valid_frames',
            'text_truncated', 'img_shape')``.
    """

    def __init__(
        self,
        video_key: str = 'imgs',
        text_key: str = 'text_ids',
        meta_keys: Sequence[str] = ('video_id', 'filename', 'sample_idx',
                                    'video_index', 'caption_index', 'text',
                                    'valid_frames', 'text_truncated',
                                    'img_shape')
    ) -> None:
        self.video_key = video_key
        self.text_key = text_key
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: Dict) -> Dict:
        """Pack ``results`` into ``inputs`` and ``data_samples``.

        Args:
            results (dict): The result dict.

        Returns:
            dict: ``{'inputs': Tensor, 'data_samples': ActionDataSample}``.
        """
        for key in (self.video_key, self.text_key):
            if key not in results:
                raise KeyError(
                    f'PackVideoTextInputs needs {key!r} in the results '
                    f'(available: {sorted(results)}); put the video decoding '
                    'and TokenizeText before it')
        text_ids = results[self.text_key]
        if not isinstance(text_ids, torch.Tensor):
            text_ids = to_tensor(text_ids)
        text_ids = text_ids.long()
        if text_ids.ndim == 1:
            text_ids = text_ids[None]
        if text_ids.ndim != 2 or text_ids.shape[0] == 0:
            raise ValueError(
                f'{results.get("filename", "sample")}: {self.text_key} must '
                'be a non-empty [num_captions, context_length] tensor, got '
                f'shape {tuple(text_ids.shape)}')
        data_sample = ActionDataSample()
        data_sample.set_field(text_ids, self.text_key, dtype=torch.Tensor)
        data_sample.set_metainfo(
            {k: results[k]
             for k in self.meta_keys if k in results})
        return dict(
            inputs=to_tensor(results[self.video_key]),
            data_samples=data_sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(video_key={self.video_key!r}, '
                f'text_key={self.text_key!r}, meta_keys={self.meta_keys})')
