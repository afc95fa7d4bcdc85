# Copyright (c) mmstop contributors. All rights reserved.
import cv2
import numpy as np
import pytest

from mmstop.datasets.transforms import (SegmentSampleFrames,
                                        official_segment_indices)
from mmstop.registry import TRANSFORMS


def _sample(n, t, test_mode, **kwargs):
    tr = SegmentSampleFrames(num_segments=t, test_mode=test_mode, **kwargs)
    return tr(dict(total_frames=n, start_index=0))['frame_inds'].tolist()


@pytest.mark.parametrize(
    'n,t,expected',
    [
        # tick = n / T; frame x = int(tick / 2 + tick * x)
        (10, 4, [1, 3, 6, 8]),  # tick 2.5: 1.25, 3.75, 6.25, 8.75
        (30, 12, [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28]),
        (13, 4, [1, 4, 8, 11]),  # tick 3.25: 1.625, 4.875, 8.125, 11.375
        (12, 12, list(range(12))),  # n == T: clip(arange)
        (5, 8, [0, 1, 2, 3, 4, 4, 4, 4]),  # short video: last frame repeats
        (1, 3, [0, 0, 0]),
    ])
def test_test_mode_segment_centres(n, t, expected):
    assert _sample(n, t, True) == expected
    assert _sample(n, t, True) == expected  # deterministic


def test_train_official_segments():
    # n = 26, T = 4: segment length 26 // 4 = 6 -> [0,6) [6,12) [12,18)
    # [18,24); frames 24 and 25 are never drawn (official quirk)
    np.random.seed(0)
    draws = np.array([_sample(26, 4, False) for _ in range(300)])
    for x in range(4):
        assert set(draws[:, x].tolist()) == set(range(6 * x, 6 * x + 6))
    assert draws.max() == 23


def test_train_equal_segments_cover_all_frames():
    # n = 26, T = 4: bounds floor(x * 26 / 4) = 0, 6, 13, 19, 26
    np.random.seed(1)
    draws = np.array(
        [_sample(26, 4, False, train_segments='equal') for _ in range(400)])
    bounds = [0, 6, 13, 19, 26]
    for x in range(4):
        assert set(draws[:,
                         x].tolist()) == set(range(bounds[x], bounds[x + 1]))


def test_train_short_video_clipped():
    assert _sample(3, 5, False) == [0, 1, 2, 2, 2]
    assert _sample(3, 5, False, train_segments='equal') == [0, 1, 2, 2, 2]
    # n == T: segment length 1, no randomness
    assert _sample(6, 6, False) == list(range(6))


def test_keys_start_index_and_window():
    tr = TRANSFORMS.build(
        dict(type='SegmentSampleFrames', num_segments=4, test_mode=True))
    out = tr(dict(total_frames=10, start_index=1))
    assert out['frame_inds'].tolist() == [2, 4, 7, 9]
    assert out['clip_len'] == 4 and out['num_clips'] == 1
    assert out['frame_interval'] is None and out['valid_frames'] == 4
    assert tr(dict(total_frames=3))['valid_frames'] == 3
    # window [2 s, 3.1 s] at 10 fps: frames int(20) .. int(31) = 12 frames,
    # tick 3 -> 20 + [1, 4, 7, 10]
    out = tr(dict(total_frames=100, avg_fps=10.0, start_sec=2.0, end_sec=3.1))
    assert out['frame_inds'].tolist() == [21, 24, 27, 30]
    # the end is capped at the last frame (official min(end*fps, n))
    out = tr(dict(total_frames=20, avg_fps=10.0, end_sec=31.0))
    assert out['frame_inds'].tolist() == [2, 7, 12, 17]


def test_bad_input():
    with pytest.raises(ValueError, match='num_segments'):
        SegmentSampleFrames(num_segments=0)
    with pytest.raises(ValueError, match='train_segments'):
        SegmentSampleFrames(num_segments=2, train_segments='tsn')
    tr = SegmentSampleFrames(num_segments=2)
    with pytest.raises(KeyError, match='DecordInit'):
        tr(dict(start_index=0))
    with pytest.raises(ValueError, match='no frames'):
        tr(dict(total_frames=0, filename='empty.mp4'))
    with pytest.raises(ValueError, match='avg_fps'):
        tr(dict(total_frames=10, end_sec=1.0, filename='a.mp4'))
    with pytest.raises(ValueError, match='selects no frame'):
        tr(dict(total_frames=10, avg_fps=5.0, start_sec=4.0))
    with pytest.raises(ValueError):
        official_segment_indices(0, 3, True)


def _write_index_video(path, num_frames):
    """Frame i is a flat grey image of value 10 + 12 i."""
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'mp4v'), 8.0, (64, 64))
    for i in range(num_frames):
        writer.write(np.full((64, 64, 3), 10 + 12 * i, np.uint8))
    writer.release()


def test_in_mmaction_pipeline_decodes_sampled_frames(tmp_path):
    from mmengine.dataset import Compose
    path = tmp_path / 'ramp.mp4'
    _write_index_video(path, 15)
    pipe = Compose([
        TRANSFORMS.build(cfg) for cfg in (
            dict(type='DecordInit'),
            dict(type='SegmentSampleFrames', num_segments=4, test_mode=True),
            dict(type='DecordDecode'),
        )
    ])
    out = pipe(dict(filename=str(path), start_index=0, modality='RGB'))
    assert out['total_frames'] == 15
    # tick 3.75: 1.875, 5.625, 9.375, 13.125
    assert out['frame_inds'].tolist() == [1, 5, 9, 13]
    means = [float(img.mean()) for img in out['imgs']]
    decoded = [round((m - 10) / 12) for m in means]
    assert decoded == [1, 5, 9, 13]
