# Copyright (c) mmstop contributors. All rights reserved.
"""Official STOP / CLIP4Clip frame sampling (``SegmentSampleFrames``).

Reproduces ``dataloaders/sampling.py`` of the official STOP code (commit
7253928; ``docs/stop.md#frame-sampling-and-input``) as an MMAction2
transform placed between ``DecordInit`` and ``DecordDecode``::

    dict(type='DecordInit'),
    dict(type='SegmentSampleFrames', num_segments=12, test_mode=False),
    dict(type='DecordDecode'),
    ...

With ``n`` frames and ``T = num_segments``:

* **test** (``test_mode=True``, segment centres, official
  ``uniform_sampling``): if ``n > T``, ``tick = n / T`` and frame
  ``x`` is ``int(tick / 2 + tick * x)``; otherwise ``clip(arange(T), 0, n-1)``.
* **train** (``test_mode=False``), ``train_segments='official'`` (official
  ``multi_segments_sampling`` with ``random_shift=True``, i.e. TSN): if
  ``n >= T``, segments have the integer length ``d = n // T`` and frame
  ``x`` is ``x * d + randint(d)``; the last ``n mod T`` frames are never
  sampled (official quirk). Otherwise ``clip(arange(T), 0, n-1)``.
  ``train_segments='equal'`` instead splits all ``n`` frames into ``T``
  segments ``[floor(x n / T), floor((x+1) n / T))`` and draws one frame from
  each, so every frame can be drawn.
* Fewer frames than ``T``: indices are clipped, the last frame repeats
  (both modes).

The official VATEX loader uses the test-style sampling for training: use
``test_mode=True`` in the VATEX training pipeline.

Optional time window (official ActivityNet / DiDeMo ``start_time`` /
``end_time``): when the results hold ``start_sec`` and/or ``end_sec`` (set by
:class:`~mmstop.datasets.VideoTextRetrievalDataset` from the annotation),
sampling is restricted to frames ``int(start_sec * fps)`` ...
``min(int(end_sec * fps), total_frames - 1)`` (both inclusive, as in the
official pyAV decoder), with ``fps = results['avg_fps']`` from ``DecordInit``.

Randomness comes from ``numpy.random`` (MMAction2's convention; MMEngine
seeds it per dataloader worker).
"""
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import BaseTransform

from mmstop.registry import TRANSFORMS

_TRAIN_SEGMENTS = ('official', 'equal')


def official_segment_indices(num_frames: int,
                             num_segments: int,
                             test_mode: bool,
                             train_segments: str = 'official',
                             rng: Optional[np.random.RandomState] = None
                             ) -> np.ndarray:
    """0-based frame indices of the official STOP sampling.

    Args:
        num_frames (int): Frames available (``n`` >= 1).
        num_segments (int): Frames to sample (``T`` >= 1).
        test_mode (bool): Segment centres if True, one random frame per
            segment if False.
        train_segments (str): ``'official'`` (integer segment length
            ``n // T``) or ``'equal'`` (segments cover all frames).
            Defaults to ``'official'``.
        rng (np.random.RandomState, optional): Random source for training
            mode. Defaults to the global ``numpy.random``.

    Returns:
        np.ndarray: int64 indices, shape [num_segments].
    """
    if num_frames < 1:
        raise ValueError(f'cannot sample from a video with {num_frames} '
                         'frames')
    if num_segments < 1:
        raise ValueError(f'num_segments must be >= 1, got {num_segments}')
    if train_segments not in _TRAIN_SEGMENTS:
        raise ValueError(f'train_segments must be one of {_TRAIN_SEGMENTS}, '
                         f'got {train_segments!r}')
    rng = np.random if rng is None else rng
    n, t = int(num_frames), int(num_segments)
    short = np.clip(np.arange(t), 0, n - 1).astype(np.int64)
    if test_mode:
        if n <= t:
            return short
        tick = n / float(t)
        return np.array([int(tick / 2.0 + tick * x) for x in range(t)],
                        dtype=np.int64)
    if n < t:
        return short
    if train_segments == 'official':
        d = n // t
        return (np.arange(t) * d + rng.randint(d, size=t)).astype(np.int64)
    bounds = (np.arange(t + 1) * n) // t
    lengths = bounds[1:] - bounds[:-1]  # all >= 1 since n >= t
    return (bounds[:-1] +
            (rng.random_sample(t) * lengths).astype(np.int64)).astype(np.int64)


@TRANSFORMS.register_module()
class SegmentSampleFrames(BaseTransform):
    """Sample ``num_segments`` frames the way the official STOP code does.

    See the module docstring for the exact rule.

    Required keys: ``total_frames``; ``start_index`` (optional, default 0);
    ``avg_fps`` (only with ``start_sec`` / ``end_sec``).

    Added keys: ``frame_inds`` (int64 [num_segments]), ``clip_len``
    (= num_segments), ``num_clips`` (1), ``frame_interval`` (None),
    ``valid_frames`` (``min(n, num_segments)``, the official video mask
    count).

    Args:
        num_segments (int): Frames per video (T; 12 for MSR-VTT/VATEX, 64 for
            ActivityNet/DiDeMo in STOP).
        test_mode (bool): Segment centres (deterministic) if True, one random
            frame per segment if False. Defaults to False.
        train_segments (str): Training segments, ``'official'`` (integer
            length ``n // T``, the last ``n mod T`` frames never drawn) or
            ``'equal'``. Defaults to ``'official'``.
    """

    def __init__(self,
                 num_segments: int,
                 test_mode: bool = False,
                 train_segments: str = 'official') -> None:
        if int(num_segments) < 1:
            raise ValueError(f'num_segments must be >= 1, got {num_segments}')
        if train_segments not in _TRAIN_SEGMENTS:
            raise ValueError(
                f'train_segments must be one of {_TRAIN_SEGMENTS}, got '
                f'{train_segments!r}')
        self.num_segments = int(num_segments)
        self.test_mode = test_mode
        self.train_segments = train_segments

    def _window(self, results: Dict):
        total = int(results['total_frames'])
        start_sec = results.get('start_sec')
        end_sec = results.get('end_sec')
        if start_sec is None and end_sec is None:
            return 0, total
        fps = results.get('avg_fps')
        if not fps or fps <= 0:
            raise ValueError(
                f'{results.get("filename", "video")}: start_sec/end_sec need '
                f'a positive "avg_fps" (set by DecordInit), got {fps!r}')
        first = max(0, int((start_sec or 0.0) * fps))
        last = total - 1
        if end_sec is not None:
            last = min(int(end_sec * fps), total - 1)
        if first > last:
            raise ValueError(
                f'{results.get("filename", "video")}: time window '
                f'[{start_sec}, {end_sec}] s selects no frame of {total} '
                f'at {fps} fps')
        return first, last - first + 1

    def transform(self, results: Dict) -> Dict:
        """Add ``frame_inds`` and the clip fields to ``results``.

        Args:
            results (dict): The result dict.

        Returns:
            dict: The result dict.
        """
        if 'total_frames' not in results:
            raise KeyError('SegmentSampleFrames needs "total_frames" (run '
                           'DecordInit first)')
        offset, num_frames = self._window(results)
        if num_frames < 1:
            raise ValueError(
                f'{results.get("filename", "video")}: the video has no '
                'frames (total_frames=0)')
        inds = official_segment_indices(num_frames, self.num_segments,
                                        self.test_mode, self.train_segments)
        inds = inds + offset + int(results.get('start_index', 0))
        results['frame_inds'] = inds
        results['clip_len'] = self.num_segments
        results['frame_interval'] = None
        results['num_clips'] = 1
        results['valid_frames'] = min(num_frames, self.num_segments)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'num_segments={self.num_segments}, '
                f'test_mode={self.test_mode}, '
                f'train_segments={self.train_segments!r})')
