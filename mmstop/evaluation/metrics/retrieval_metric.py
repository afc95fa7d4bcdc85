# Copyright (c) mmstop contributors. All rights reserved.
"""Registered text-video retrieval metric (``VideoTextRetrievalMetric``).

What it reads from each data sample the model returns in ``predict`` (a
:class:`~mmaction.structures.ActionDataSample`, or the dict MMEngine's
evaluator makes of it):

* ``video_feature``: Tensor [D] (or [1, D]) for the sample's video;
* ``text_feature``: Tensor [num_captions, D] (or [D] for one caption), one
  row per caption, in the order of the sample's ``text_ids`` rows;
* ``sample_idx`` (metainfo, set by the dataset): the dataset index, used to
  restore dataset order after results are gathered across ranks;
* ``video_index`` (metainfo, optional): the video of the sample. Samples with
  the same ``video_index`` are merged into one gallery video (their caption
  features are appended in sample order and the first sample's video feature
  is used), so a test split loaded with ``caption_mode='unfold'`` is still
  evaluated with one column per video. Without it every sample is its own
  video.

The two features may also sit in a ``features`` dict/InstanceData, as
MMAction2's ``CLIPSimilarity`` writes them.

``compute_metrics`` sorts the (gathered) results by ``sample_idx``, builds
the text x video cosine similarity (features are L2-normalised here, so
normalised or raw features both work) and the caption -> video mapping from
the per-sample caption counts, and calls
:func:`mmstop.evaluation.retrieval_metrics`. Keys come out as
``retrieval/t2v/R@1`` ... ``retrieval/v2t/MnR`` (percent recalls, 1-based
ranks); see :mod:`mmstop.evaluation.functional.retrieval` for the rank
definitions, tie handling and DSL.
"""
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmstop.registry import METRICS
from ..functional.retrieval import retrieval_metrics


def _as_dict(sample: Any) -> dict:
    if isinstance(sample, dict):
        return sample
    if hasattr(sample, 'to_dict'):
        return sample.to_dict()
    raise TypeError('data samples must be dicts or BaseDataElements, got '
                    f'{type(sample).__name__}')


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


@METRICS.register_module()
class VideoTextRetrievalMetric(BaseMetric):
    """t2v and v2t R@K, MdR, MnR with several captions per video.

    Args:
        ks (Sequence[int]): The K of R@K. Defaults to (1, 5, 10).
        ties (str): ``'pessimistic'`` (ties count against the model) or
            ``'optimistic'``. Defaults to ``'pessimistic'``.
        v2t_mode (str): ``'caption'`` (every text is a v2t candidate) or
            ``'group'`` (official multi-sentence evaluation).
            Defaults to ``'caption'``.
        dsl (bool): Dual-softmax re-weighting before ranking.
            Defaults to False.
        dsl_temperature (float): DSL softmax temperature applied to the
            cosine similarity. Defaults to 100.0.
        collect_device (str): ``'cpu'`` or ``'gpu'``, where results are
            gathered across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): Key prefix. Defaults to ``'retrieval'``.
    """

    default_prefix = 'retrieval'

    def __init__(self,
                 ks: Sequence[int] = (1, 5, 10),
                 ties: str = 'pessimistic',
                 v2t_mode: str = 'caption',
                 dsl: bool = False,
                 dsl_temperature: float = 100.0,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if ties not in ('pessimistic', 'optimistic'):
            raise ValueError("ties must be 'pessimistic' or 'optimistic', "
                             f'got {ties!r}')
        if v2t_mode not in ('caption', 'group'):
            raise ValueError("v2t_mode must be 'caption' or 'group', "
                             f'got {v2t_mode!r}')
        self.ks = tuple(int(k) for k in ks)
        self.ties = ties
        self.v2t_mode = v2t_mode
        self.dsl = dsl
        self.dsl_temperature = float(dsl_temperature)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store each sample's video and caption features.

        Args:
            data_batch (Any): Unused.
            data_samples (Sequence[dict | ActionDataSample]): Outputs of the
                model's ``predict``.
        """
        for sample in data_samples:
            sample = _as_dict(sample)
            feats = sample
            if 'video_feature' not in sample and 'features' in sample:
                feats = _as_dict(sample['features'])
            if 'video_feature' not in feats or 'text_feature' not in feats:
                raise KeyError(
                    'VideoTextRetrievalMetric needs "video_feature" [D] and '
                    '"text_feature" [num_captions, D] in every data sample '
                    f'(sample_idx={sample.get("sample_idx")}); got keys '
                    f'{sorted(feats)}')
            video = _to_numpy(feats['video_feature']).reshape(-1)
            text = _to_numpy(feats['text_feature'])
            if text.ndim == 1:
                text = text[None]
            if text.ndim != 2 or text.shape[1] != video.shape[0]:
                raise ValueError(
                    f'sample_idx={sample.get("sample_idx")}: text_feature '
                    f'{tuple(text.shape)} must be [num_captions, D] with the '
                    f'video_feature dimension D={video.shape[0]}')
            self.results.append(
                dict(
                    video_feature=video,
                    text_feature=text,
                    sample_idx=sample.get('sample_idx'),
                    video_index=sample.get('video_index')))

    @staticmethod
    def assemble(results: List[dict]):
        """Stack per-sample results into the retrieval problem.

        Args:
            results (list[dict]): Outputs of :meth:`process` (gathered).

        Returns:
            tuple: ``(text_features [N_t, D], video_features [N_v, D],
            text_to_video [N_t])`` as numpy arrays.
        """
        if not results:
            raise ValueError('VideoTextRetrievalMetric got no results')
        if all(r.get('sample_idx') is not None for r in results):
            order = sorted(
                range(len(results)),
                key=lambda i: int(results[i]['sample_idx']))
            seen = set()
            unique = []
            for i in order:
                key = int(results[i]['sample_idx'])
                if key in seen:
                    continue
                seen.add(key)
                unique.append(results[i])
            if len(unique) != len(results):
                print_log(
                    f'VideoTextRetrievalMetric: dropped '
                    f'{len(results) - len(unique)} duplicated sample(s) '
                    '(same sample_idx)',
                    logger='current',
                    level=logging.WARNING)
            results = unique
        use_video_index = all(
            r.get('video_index') is not None for r in results)
        video_pos: Dict[Any, int] = OrderedDict()
        videos, texts, text_to_video = [], [], []
        for i, r in enumerate(results):
            key = int(r['video_index']) if use_video_index else i
            if key not in video_pos:
                video_pos[key] = len(videos)
                videos.append(r['video_feature'])
            texts.append(r['text_feature'])
            text_to_video.extend([video_pos[key]] * len(r['text_feature']))
        return (np.concatenate(texts, axis=0), np.stack(videos, axis=0),
                np.asarray(text_to_video, dtype=np.int64))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Compute the metrics from the gathered results.

        Args:
            results (list[dict]): All samples' features.

        Returns:
            dict: ``t2v/R@K``, ``t2v/MdR``, ``t2v/MnR`` and the ``v2t/``
            counterparts (the runner adds the prefix).
        """
        texts, videos, text_to_video = self.assemble(results)
        # a zero feature gives NaN similarities, which retrieval_metrics
        # rejects with a clear error
        with np.errstate(invalid='ignore', divide='ignore'):
            texts = texts / np.linalg.norm(texts, axis=-1, keepdims=True)
            videos = videos / np.linalg.norm(videos, axis=-1, keepdims=True)
        sim = texts @ videos.T
        print_log(
            f'VideoTextRetrievalMetric: {sim.shape[0]} captions x '
            f'{sim.shape[1]} videos',
            logger='current')
        return retrieval_metrics(
            sim,
            text_to_video,
            ks=self.ks,
            ties=self.ties,
            v2t_mode=self.v2t_mode,
            dsl=self.dsl,
            dsl_temperature=self.dsl_temperature)
