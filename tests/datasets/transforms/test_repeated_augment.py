# Copyright (c) mmstop contributors. All rights reserved.
import numpy as np
import pytest
import torch
from mmaction.datasets import repeat_pseudo_collate
from mmcv.transforms import BaseTransform
from mmengine.registry import init_default_scope

from mmstop.datasets.transforms.repeated_augment import RepeatedAugment
from mmstop.registry import TRANSFORMS


class Scribble(BaseTransform):
    """In-place edit with a random value: repeats must not share frames."""

    def transform(self, results):
        value = np.random.randint(1, 255)
        for img in results['imgs']:
            img[0, 0] = value
        results['value'] = value
        return results


def decoded(t=3):
    return dict(
        imgs=[np.zeros((8, 8, 3), np.uint8) for _ in range(t)],
        img_shape=(8, 8),
        label=2,
        filename='a.mp4')


def test_repeats_are_independent_copies():
    np.random.seed(0)
    src = decoded()
    tr = RepeatedAugment([Scribble()], num_repeats=3)
    out = tr(src)
    assert isinstance(out, list) and len(out) == 3
    values = [o['value'] for o in out]
    assert len(set(values)) > 1  # each repeat drew its own augmentation
    for o in out:
        assert all(img[0, 0, 0] == o['value'] for img in o['imgs'])
        assert o['label'] == 2 and o['filename'] == 'a.mp4'
    # the source sample is untouched
    assert all(not img.any() for img in src['imgs'])


def test_builds_mmaction_transforms_and_collates():
    init_default_scope('mmaction')
    tr = TRANSFORMS.build(
        dict(
            type='RepeatedAugment',
            num_repeats=2,
            transforms=[
                dict(type='RandomResizedCrop'),
                dict(type='Resize', scale=(4, 4), keep_ratio=False),
                dict(type='Flip', flip_ratio=0.5),
                dict(type='FormatShape', input_format='NCTHW'),
                dict(type='PackActionInputs')
            ]))
    sample = dict(decoded(), num_clips=1, clip_len=3, modality='RGB')
    out = tr(sample)
    assert len(out) == 2
    batch = repeat_pseudo_collate([out, tr(sample)])
    assert len(batch['inputs']) == 4
    assert all(x.shape == (1, 3, 3, 4, 4) and x.dtype == torch.uint8
               for x in batch['inputs'])
    assert [s.gt_label.item() for s in batch['data_samples']] == [2] * 4


def test_none_propagates_and_bad_args():
    assert RepeatedAugment([lambda r: None])(decoded()) is None
    with pytest.raises(ValueError, match='num_repeats'):
        RepeatedAugment([], num_repeats=0)
    with pytest.raises(TypeError, match='list of transform configs'):
        RepeatedAugment(dict(type='Flip'))
    with pytest.raises(TypeError, match=r'transforms\[0\] is not callable'):
        RepeatedAugment([3])
