# Copyright (c) mmstop contributors. All rights reserved.
import numpy as np
import pytest

from mmstop.datasets import DEMO_CLASSES, MotionPretrainDataset
from mmstop.datasets.motion_pretrain import (PRETRAIN_MOTIONS,
                                             pretrain_classes,
                                             render_motion_clip)
from mmstop.registry import DATASETS


def _foreground(frames):
    """Per-frame centroid (x, y) and area of the pixels unlike the border."""
    centroids, areas = [], []
    for frame in frames.astype(np.float32):
        border = np.concatenate(
            [frame[0], frame[-1], frame[:, 0], frame[:, -1]])
        mask = np.abs(frame - np.median(border, axis=0)).max(-1) > 40
        ys, xs = np.nonzero(mask)
        centroids.append((xs.mean(), ys.mean()) if len(xs) else (0, 0))
        areas.append(mask.sum())
    return np.array(centroids), np.array(areas, np.float64)


def test_classes_are_disjoint_from_the_demo_classes():
    demo = {name for name, *_ in DEMO_CLASSES}
    assert not demo & set(PRETRAIN_MOTIONS)
    classes = pretrain_classes()
    assert len(classes) == 24 and len(set(classes)) == 24
    with pytest.raises(ValueError, match='unknown motions'):
        pretrain_classes(motions=['moving up'])


def test_dataset_is_balanced_deterministic_and_registered():
    data = DATASETS.build(
        dict(
            type='MotionPretrainDataset',
            length=48,
            num_frames=6,
            image_size=24))
    assert [data[i]['label'] for i in range(48)] == list(range(24)) * 2
    item = data[5]
    assert item['imgs'].shape == (6, 24, 24, 3)
    assert item['imgs'].dtype == np.uint8
    np.testing.assert_array_equal(item['imgs'],
                                  MotionPretrainDataset(48, 6, 24)[5]['imgs'])
    assert not np.array_equal(
        item['imgs'],
        MotionPretrainDataset(48, 6, 24, split='val')[5]['imgs'])
    assert data.class_names[5] == 'cross moving up-right'


@pytest.mark.parametrize('motion,dx,dy', [('moving up-left', -1, -1),
                                          ('moving down-right', 1, 1),
                                          ('moving up-right', 1, -1)])
def test_diagonal_motions_move_the_object(motion, dx, dy):
    for seed in range(3):
        frames = render_motion_clip(
            'square', motion, np.random.default_rng(seed), 8, 48, noise=0.)
        centroids, _ = _foreground(frames)
        step = centroids[-1] - centroids[0]
        assert np.sign(step[0]) == dx and np.sign(step[1]) == dy
        assert np.abs(step).min() > 3


def test_fading_changes_visibility_in_time_order():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        _, up = _foreground(
            render_motion_clip('cross', 'appearing', rng, 8, 32, noise=0.))
        _, down = _foreground(
            render_motion_clip('cross', 'disappearing', rng, 8, 32, noise=0.))
        assert up[0] < up[-1] and down[0] > down[-1]


def test_rotation_changes_the_frames_but_not_the_place():
    frames = render_motion_clip(
        'triangle',
        'rotating clockwise',
        np.random.default_rng(0),
        8,
        48,
        noise=0.)
    centroids, areas = _foreground(frames)
    assert np.abs(centroids - centroids[0]).max() < 2
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 60
