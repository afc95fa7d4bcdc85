# Copyright (c) mmstop contributors. All rights reserved.
import numpy as np
import pytest

from mmstop.datasets.transforms.multi_view import (LongSideCrops,
                                                   SegmentViewSampleFrames,
                                                   long_side_offsets,
                                                   segment_view_indices)
from mmstop.registry import TRANSFORMS


def official_ssv2_test_views(n, num_segment=8, test_num_segment=2):
    """The official SSv2 (decord) test sampling (docs/ssp.md#view-sampling):
    16 indices {int(tick/2 + tick*x)} + {int(tick*x)}, sorted,
    split into views with buffer[k::2]."""
    tick = n / float(num_segment)
    idx = [int(tick / 2.0 + tick * x) for x in range(num_segment)] + \
        [int(tick * x) for x in range(num_segment)]
    while len(idx) < num_segment * test_num_segment:
        idx.append(idx[-1])
    idx = np.sort(np.array(idx))
    return [idx[k::test_num_segment].tolist() for k in range(test_num_segment)]


@pytest.mark.parametrize('n', [1, 5, 8, 9, 17, 31, 48, 123])
def test_segment_views_equal_official_ssv2(n):
    inds = segment_view_indices(n, 8, 2)
    views = [inds[:8].tolist(), inds[8:].tolist()]
    assert views == official_ssv2_test_views(n)
    assert inds.max() < n and inds.min() >= 0


def test_segment_views_values_and_keys():
    # n = 20, 4 segments of tick 5, 2 views: starts and centres
    assert segment_view_indices(20, 4,
                                2).tolist() == [0, 5, 10, 15, 2, 7, 12, 17]
    # 3 views: offsets 0, 5/3, 10/3 inside every segment
    assert segment_view_indices(
        20, 4, 3).tolist() == [0, 5, 10, 15, 1, 6, 11, 16, 3, 8, 13, 18]
    tr = TRANSFORMS.build(
        dict(type='SegmentViewSampleFrames', clip_len=4, num_views=2))
    out = tr(dict(total_frames=20, start_index=1))
    assert out['frame_inds'].tolist() == [1, 6, 11, 16, 3, 8, 13, 18]
    assert (out['clip_len'], out['num_clips'], out['frame_interval']) == (4, 2,
                                                                          None)


def test_segment_views_bad_input():
    with pytest.raises(ValueError, match='num_views must be a positive'):
        SegmentViewSampleFrames(clip_len=8, num_views=0)
    with pytest.raises(ValueError, match='clip_len'):
        SegmentViewSampleFrames(clip_len=2.5)
    tr = SegmentViewSampleFrames(clip_len=8)
    with pytest.raises(KeyError, match='total_frames'):
        tr(dict(start_index=0))
    with pytest.raises(ValueError, match='a.mp4.*no frames'):
        tr(dict(total_frames=0, filename='a.mp4'))


@pytest.mark.parametrize(
    'long,crop,n,expected',
    [
        (298, 224, 3, [0, 37, 74
                       ]),  # = ThreeCrop: 0, (long-crop)//2, long-crop
        (300, 224, 6, [0, 15, 30, 45, 60, 76]),  # int(j * 76 / 5)
        (398, 224, 9, [0, 21, 43, 65, 87, 108, 130, 152, 174]),
        (224, 224, 9, [0] * 9),
        (300, 224, 1, [38]),
    ])
def test_long_side_offsets(long, crop, n, expected):
    assert long_side_offsets(long, crop, n) == expected


def frames(t, h, w):
    # pixel value encodes (frame, row, col) so crops can be located
    return [(np.arange(h * w, dtype=np.int64).reshape(h, w, 1) * 10 +
             f).repeat(3, axis=2) for f in range(t)]


@pytest.mark.parametrize('h,w', [(4, 10), (10, 4)])
def test_long_side_crops(h, w):
    t, n = 2, 3
    tr = TRANSFORMS.build(dict(type='LongSideCrops', crop_size=4, num_crops=n))
    out = tr(dict(imgs=frames(t, h, w), img_shape=(h, w)))
    assert len(out['imgs']) == n * t
    assert out['img_shape'] == (4, 4)
    offsets = long_side_offsets(max(h, w), 4, n)
    for c in range(n):
        for f in range(t):
            crop = out['imgs'][c * t + f]
            assert crop.shape == (4, 4, 3)
            y, x = (0, offsets[c]) if w >= h else (offsets[c], 0)
            assert crop[0, 0, 0] == (y * w + x) * 10 + f
            assert out['crop_bbox'][c * t + f].tolist() == [x, y, x + 4, y + 4]


def test_long_side_crops_centres_the_short_side():
    tr = LongSideCrops(crop_size=(4, 4), num_crops=2)
    out = tr(dict(imgs=frames(1, 6, 9)))
    # long side = width: x offsets 0 and 5; short side centred: y = 1
    assert out['crop_bbox'].tolist() == [[0, 1, 4, 5], [5, 1, 9, 5]]


def test_long_side_crops_bad_input():
    with pytest.raises(ValueError, match='num_crops'):
        LongSideCrops(crop_size=4, num_crops=0)
    with pytest.raises(ValueError, match='crop_size'):
        LongSideCrops(crop_size=(4, 4, 4))
    with pytest.raises(ValueError, match='does not fit.*resize first'):
        LongSideCrops(crop_size=8)(dict(imgs=frames(1, 6, 9)))
    with pytest.raises(KeyError, match='imgs'):
        LongSideCrops(crop_size=8)(dict())
