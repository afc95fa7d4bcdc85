# Copyright (c) mmstop contributors. All rights reserved.
"""Multi-view test sampling of the VideoMAE-style code used by SSP.

Two test views that MMAction2 1.2.0 cannot express
(``docs/ssp.md#view-sampling``):

* :class:`LongSideCrops` -- ``n`` crops of ``crop_size`` spaced evenly along
  the long side of each frame, crop ``j`` at offset
  ``int(j * (long - crop) / (n - 1))`` (official ``test_num_crop``; 3 crops
  equal MMAction2's ``ThreeCrop``, SSP uses 6 for Breakfast and 9 for SSv2).
* :class:`SegmentViewSampleFrames` -- ``num_views`` interleaved TSN-style
  temporal views: with ``tick = total_frames / clip_len``, view ``k`` takes
  frame ``int(k * tick / num_views + tick * x)`` for ``x = 0..clip_len-1``
  (official SSv2 test sampling; with 2 views, view 0 is the segment starts
  and view 1 the segment centres).

Place them like their MMAction2 counterparts::

    dict(type='DecordInit'),
    dict(type='SegmentViewSampleFrames', clip_len=8, num_views=2),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='LongSideCrops', crop_size=224, num_crops=9),
    dict(type='FormatShape', input_format='NCTHW'),

``FormatShape`` then gives ``num_crops * num_views`` clips per video, which
the recognizer averages (``average_clips``).
"""
from typing import Dict, List, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmstop.registry import TRANSFORMS


def _positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f'{owner}: {name} must be a positive integer, got '
                         f'{value!r}')
    return int(value)


def long_side_offsets(long: int, crop: int, num_crops: int) -> List[int]:
    """Offsets of ``num_crops`` windows of length ``crop`` in ``long``.

    ``int(j * (long - crop) / (num_crops - 1))`` for ``j = 0..num_crops-1``
    (the first window starts at 0, the last ends at ``long``); a single crop
    is centred (``(long - crop) // 2``).
    """
    if crop > long:
        raise ValueError(f'crop length {crop} exceeds the frame side {long}')
    if num_crops == 1:
        return [(long - crop) // 2]
    step = (long - crop) / float(num_crops - 1)
    return [int(j * step) for j in range(num_crops)]


@TRANSFORMS.register_module()
class LongSideCrops(BaseTransform):
    """``num_crops`` evenly spaced square-ish crops along the long side.

    The crop window slides along the longer image side (the width when the
    frame is square); along the shorter side it is centred, which is a no-op
    after ``Resize(scale=(-1, crop))`` as in the official test (short side
    resized to the crop size). All frames share the crop boxes.

    Required keys: ``imgs``. Modified keys: ``imgs`` (the crops of every
    frame, crop-major: ``num_crops * len(imgs)`` frames), ``img_shape``.
    Added keys: ``crop_bbox`` (one ``[x1, y1, x2, y2]`` per output frame,
    like ``ThreeCrop``).

    Args:
        crop_size (int | tuple[int, int]): Crop ``(w, h)``; an int gives a
            square crop.
        num_crops (int): Crops per frame. Defaults to 3.
    """

    def __init__(self, crop_size, num_crops: int = 3) -> None:
        if isinstance(crop_size,
                      (int, np.integer)) and not isinstance(crop_size, bool):
            crop_size = (int(crop_size), int(crop_size))
        crop_size = tuple(crop_size)
        if len(crop_size) != 2:
            raise ValueError(f'LongSideCrops: crop_size must be an int or '
                             f'(w, h), got {crop_size!r}')
        self.crop_size: Tuple[int, int] = tuple(
            _positive_int(c, 'crop_size', 'LongSideCrops') for c in crop_size)
        self.num_crops = _positive_int(num_crops, 'num_crops', 'LongSideCrops')

    def transform(self, results: Dict) -> Dict:
        """Crop every frame ``num_crops`` times.

        Args:
            results (dict): The result dict.

        Returns:
            dict: The result dict.
        """
        if 'imgs' not in results:
            raise KeyError('LongSideCrops needs "imgs" (decode first)')
        imgs = results['imgs']
        img_h, img_w = imgs[0].shape[:2]
        crop_w, crop_h = self.crop_size
        if crop_w > img_w or crop_h > img_h:
            raise ValueError(
                f'LongSideCrops: crop (w, h) = {self.crop_size} does not fit '
                f'frames of (w, h) = ({img_w}, {img_h}); resize first')
        if img_w >= img_h:
            xs = long_side_offsets(img_w, crop_w, self.num_crops)
            ys = [(img_h - crop_h) // 2] * self.num_crops
        else:
            ys = long_side_offsets(img_h, crop_h, self.num_crops)
            xs = [(img_w - crop_w) // 2] * self.num_crops
        cropped, boxes = [], []
        for x, y in zip(xs, ys):
            box = [x, y, x + crop_w, y + crop_h]
            cropped.extend(img[y:y + crop_h, x:x + crop_w] for img in imgs)
            boxes.extend([box] * len(imgs))
        results['imgs'] = cropped
        results['crop_bbox'] = np.array(boxes)
        results['img_shape'] = (crop_h, crop_w)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'num_crops={self.num_crops})')


def segment_view_indices(num_frames: int, clip_len: int,
                         num_views: int) -> np.ndarray:
    """Frame indices of the interleaved segment views, view-major.

    Returns:
        np.ndarray: int64 ``[num_views * clip_len]``; entry
        ``k * clip_len + x`` is ``int(k * tick / num_views + tick * x)`` with
        ``tick = num_frames / clip_len`` (always ``< num_frames``).
    """
    if num_frames < 1:
        raise ValueError(f'cannot sample from a video with {num_frames} '
                         'frames')
    tick = num_frames / float(clip_len)
    inds = [
        int(k * tick / num_views + tick * x) for k in range(num_views)
        for x in range(clip_len)
    ]
    return np.array(inds, dtype=np.int64)


@TRANSFORMS.register_module()
class SegmentViewSampleFrames(BaseTransform):
    """Interleaved TSN-segment test views (official SSv2 test sampling).

    The video is split into ``clip_len`` segments of ``tick = n / clip_len``
    frames; view ``k`` takes the frame at ``k / num_views`` of every segment
    (see :func:`segment_view_indices`). Deterministic; for training and
    single-view validation use ``SegmentSampleFrames``.

    Required keys: ``total_frames``; ``start_index`` (optional, default 0).
    Added keys: ``frame_inds`` (``[num_views * clip_len]``, view-major),
    ``clip_len``, ``num_clips`` (= ``num_views``), ``frame_interval``
    (None).

    Args:
        clip_len (int): Frames per view (segments).
        num_views (int): Temporal views. Defaults to 2 (official SSv2
            ``test_num_segment``).
    """

    def __init__(self, clip_len: int, num_views: int = 2) -> None:
        self.clip_len = _positive_int(clip_len, 'clip_len',
                                      'SegmentViewSampleFrames')
        self.num_views = _positive_int(num_views, 'num_views',
                                       'SegmentViewSampleFrames')

    def transform(self, results: Dict) -> Dict:
        """Add ``frame_inds`` and the clip fields to ``results``.

        Args:
            results (dict): The result dict.

        Returns:
            dict: The result dict.
        """
        if 'total_frames' not in results:
            raise KeyError('SegmentViewSampleFrames needs "total_frames" '
                           '(run DecordInit first)')
        n = int(results['total_frames'])
        if n < 1:
            raise ValueError(f'{results.get("filename", "video")}: the video '
                             'has no frames (total_frames=0)')
        inds = segment_view_indices(n, self.clip_len, self.num_views)
        results['frame_inds'] = inds + int(results.get('start_index', 0))
        results['clip_len'] = self.clip_len
        results['num_clips'] = self.num_views
        results['frame_interval'] = None
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(clip_len={self.clip_len}, '
                f'num_views={self.num_views})')
