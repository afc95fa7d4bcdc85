# Copyright (c) mmstop contributors. All rights reserved.
"""Repeated augmentation of one decoded clip (``RepeatedAugment``).

The VideoMAE-style fine-tuning code that SSP uses (``--num_sample 2``,
``docs/ssp.md#training-recipe``) decodes a video once and augments the
decoded frames ``num_sample`` times independently; all copies go into the
same batch. In an MMAction2 pipeline this is::

    train_pipeline = [
        dict(type='DecordInit'),
        dict(type='SampleFrames', ...),        # frame indices drawn once
        dict(type='DecordDecode'),
        dict(type='RepeatedAugment', num_repeats=2, transforms=[
            ...,                                # random augmentations
            dict(type='FormatShape', input_format='NCTHW'),
            dict(type='PackActionInputs')]),
    ]
    train_dataloader = dict(
        collate_fn=dict(type='repeat_pseudo_collate'),  # MMAction2's
        ...)

MMAction2's ``RepeatAugDataset(sample_once=True)`` does the same at the
dataset level; this transform keeps any dataset (in particular
:class:`~mmstop.datasets.VideoClsDataset` and its input checks) and works
with every decoder. A dataloader ``batch_size`` of ``B`` videos then yields
``B * num_repeats`` clips per batch.
"""
import copy
from typing import Callable, Dict, List, Optional, Sequence, Union

from mmcv.transforms import BaseTransform

from mmstop.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RepeatedAugment(BaseTransform):
    """Run ``transforms`` ``num_repeats`` times on copies of one sample.

    Each repeat gets its own deep copy of ``results`` (the decoded frames are
    copied too, so in-place transforms such as ``RandomErasing`` cannot leak
    between repeats) and draws its own random augmentation.

    Required keys: whatever ``transforms`` need (usually ``imgs``).

    Returns a ``list`` of ``num_repeats`` outputs of ``transforms`` (usually
    packed samples), which MMAction2's ``repeat_pseudo_collate`` flattens
    into the batch. It must therefore be the last transform of the pipeline.

    Args:
        transforms (list[dict | Callable]): The per-repeat augmentation and
            packing transforms (built from MMAction2's ``TRANSFORMS``).
        num_repeats (int): Augmented copies per sample. Defaults to 2
            (official ``--num_sample 2``).
    """

    def __init__(self,
                 transforms: Sequence[Union[Dict, Callable]],
                 num_repeats: int = 2) -> None:
        if isinstance(
                num_repeats,
                bool) or not isinstance(num_repeats, int) or num_repeats < 1:
            raise ValueError(f'RepeatedAugment: num_repeats must be a '
                             f'positive integer, got {num_repeats!r}')
        if isinstance(transforms,
                      (dict, str)) or not isinstance(transforms, Sequence):
            raise TypeError('RepeatedAugment: transforms must be a list of '
                            f'transform configs, got {type(transforms)}')
        self.transforms: List[Callable] = []
        for i, t in enumerate(transforms):
            if isinstance(t, dict):
                t = TRANSFORMS.build(t)
            if not callable(t):
                raise TypeError(f'RepeatedAugment: transforms[{i}] is not '
                                f'callable: {t!r}')
            self.transforms.append(t)
        self.num_repeats = num_repeats

    @staticmethod
    def _copy(results: Dict) -> Dict:
        imgs = results.get('imgs')
        rest = {k: v for k, v in results.items() if k != 'imgs'}
        out = copy.deepcopy(rest)
        if imgs is not None:
            out['imgs'] = [img.copy() for img in imgs] if isinstance(
                imgs, list) else imgs.copy()
        return out

    def transform(self, results: Dict) -> Optional[List]:
        """Return the ``num_repeats`` augmented copies of ``results``.

        Args:
            results (dict): The result dict (decoded frames).

        Returns:
            list | None: The outputs, or None if a transform returned None
            (the dataset then draws another sample, as with ``Compose``).
        """
        outputs = []
        for _ in range(self.num_repeats):
            out = self._copy(results)
            for t in self.transforms:
                out = t(out)
                if out is None:
                    return None
            outputs.append(out)
        return outputs

    def __repr__(self) -> str:
        inner = ', '.join(repr(t) for t in self.transforms)
        return (f'{self.__class__.__name__}(num_repeats={self.num_repeats}, '
                f'transforms=[{inner}])')
