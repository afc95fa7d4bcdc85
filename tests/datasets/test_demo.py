# Copyright (c) mmstop contributors. All rights reserved.
import hashlib
import json
import os
import os.path as osp

import decord
import numpy as np
import pytest

from mmstop.datasets import DEMO_CLASSES, generate_demo_dataset


def _digest(root):
    """sha256 over every file under ``root`` (relative path + bytes)."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            h.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def _foreground_tracks(path):
    """Per-frame centroid (x, y) and area of the non-background pixels."""
    frames = decord.VideoReader(path).get_batch(list(range(16))).asnumpy()
    centroids, areas = [], []
    for frame in frames.astype(np.float32):
        border = np.concatenate(
            [frame[0], frame[-1], frame[:, 0], frame[:, -1]])
        background = np.median(border, axis=0)
        mask = np.abs(frame - background).max(-1) > 60
        ys, xs = np.nonzero(mask)
        centroids.append((xs.mean(), ys.mean()))
        areas.append(mask.sum())
    return np.array(centroids), np.array(areas, dtype=np.float64)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    return generate_demo_dataset(
        root, num_classes=6, train_per_class=2, val_per_class=1, seed=3)


def test_layout_and_annotations(demo):
    assert demo['classes'] == tuple(c[0] for c in DEMO_CLASSES)
    with open(demo['classnames_file']) as f:
        assert f.read().splitlines() == list(demo['classes'])
    for split, per_class in (('train', 2), ('val', 1)):
        with open(demo[f'{split}_ann']) as f:
            lines = [line.split() for line in f.read().splitlines()]
        labels = [int(label) for _, label in lines]
        assert sorted(labels) == sorted(list(range(6)) * per_class)
        with open(demo[f'captions_{split}']) as f:
            captions = json.load(f)
        assert [c['filename'] for c in captions] == [n for n, _ in lines]
        for (name, _), entry in zip(lines, captions):
            assert osp.isfile(osp.join(demo['video_dir'], name))
            assert 2 <= len(entry['captions']) <= 3
            assert len(set(entry['captions'])) == len(entry['captions'])
            assert all(isinstance(c, str) and c for c in entry['captions'])
    # 12 train + 6 val clips, all distinct files
    assert len(os.listdir(demo['video_dir'])) == 6 * 3


def test_videos_decode_with_requested_geometry(tmp_path):
    out = generate_demo_dataset(
        str(tmp_path),
        num_classes=2,
        train_per_class=1,
        val_per_class=0,
        num_frames=10,
        size=(80, 40),
        fps=5)
    name = open(out['train_ann']).read().split()[0]
    vr = decord.VideoReader(osp.join(out['video_dir'], name))
    assert len(vr) == 10
    assert vr.get_avg_fps() == pytest.approx(5.0)
    assert vr.get_batch([0, 9]).shape == (2, 40, 80, 3)
    with open(out['val_ann']) as f:
        assert f.read() == ''


def test_motion_matches_class(demo):
    """Each clip really shows its class: the shape moves/grows as named."""
    with open(demo['train_ann']) as f:
        lines = [line.split() for line in f.read().splitlines()]
    for name, label in lines:
        motion = DEMO_CLASSES[int(label)][1]
        centroids, areas = _foreground_tracks(
            osp.join(demo['video_dir'], name))
        dx = centroids[-1, 0] - centroids[0, 0]
        dy = centroids[-1, 1] - centroids[0, 1]
        growth = areas[-1] / areas[0]
        expected = {
            'up': dy < -8 and abs(dx) < 2,
            'down': dy > 8 and abs(dx) < 2,
            'left': dx < -8 and abs(dy) < 2,
            'right': dx > 8 and abs(dy) < 2,
            'grow': growth > 2 and abs(dx) < 2 and abs(dy) < 2,
            'shrink': growth < 0.5 and abs(dx) < 2 and abs(dy) < 2,
        }[motion]
        assert expected, (name, motion, dx, dy, growth)


def test_captions_describe_the_clip(demo):
    with open(demo['captions_train']) as f:
        captions = json.load(f)
    with open(demo['train_ann']) as f:
        labels = [int(line.split()[1]) for line in f.read().splitlines()]
    for entry, label in zip(captions, labels):
        _, motion, shape, colour = DEMO_CLASSES[label]
        for caption in entry['captions']:
            assert colour in caption and shape in caption, caption


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(num_classes=2, train_per_class=2, val_per_class=1)
    a = generate_demo_dataset(str(tmp_path / 'a'), seed=7, **kwargs)
    b = generate_demo_dataset(str(tmp_path / 'b'), seed=7, **kwargs)
    c = generate_demo_dataset(str(tmp_path / 'c'), seed=8, **kwargs)
    assert _digest(a['root']) == _digest(b['root'])
    assert _digest(a['root']) != _digest(c['root'])


def test_random_appearance_varies_within_class(tmp_path):
    out = generate_demo_dataset(
        str(tmp_path),
        num_classes=1,
        train_per_class=8,
        val_per_class=0,
        appearance='random')
    with open(out['captions_train']) as f:
        first = [entry['captions'][0] for entry in json.load(f)]
    # 'a <colour> <shape> ...': several different appearances in one class
    assert len({tuple(c.split()[1:3]) for c in first}) > 1


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_classes=0), 'num_classes'),
    (dict(num_classes=len(DEMO_CLASSES) + 1), 'num_classes'),
    (dict(appearance='blue'), 'appearance'),
    (dict(seed=1.5), 'seed must be an integer'),
    (dict(size=8), 'at least 16'),
    (dict(num_frames=1), 'num_frames'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        generate_demo_dataset(str(tmp_path), **kwargs)


def test_undecodable_geometry_fails_early(tmp_path):
    # decord 0.6.0 cannot copy out 48-pixel-wide frames of these files
    with pytest.raises(RuntimeError, match='decord cannot decode.*train_0000'):
        generate_demo_dataset(str(tmp_path), size=48)
