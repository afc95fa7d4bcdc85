# Copyright (c) mmstop contributors. All rights reserved.
"""What a dataset does with videos that cannot be read or are too short.

:class:`BadVideoMixin` gives a dataset two options:

* ``on_bad_video='error'`` (default): a video that fails to load stops the
  run with :class:`~mmstop.datasets.errors.VideoLoadError` naming the file,
  its annotation, the failing transform and the cause.
* ``on_bad_video='skip'`` (training only): the sample is replaced by a
  random other one (MMEngine's ``_rand_another``, so the choice follows the
  seeded numpy stream). Each unreadable file is logged once with the reason,
  the replacement sample carries the skipped files in its data sample's
  ``skipped_videos`` metainfo (counted per epoch by
  :class:`~mmstop.engine.hooks.BadVideoHook`), and the run stops once more
  than ``max_bad_fraction`` of the dataset's video files turned out
  unreadable. Evaluation datasets (``test_mode=True``) always raise:
  replacing a test video would change the metric.

Either way a video with fewer frames than a clip needs (the sampler then
repeats frames) is reported once per file with the number of repeated
frames.
"""
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log

from .errors import VideoLoadError, run_pipeline_with_context

ON_BAD_VIDEO = ('error', 'skip')


def repeated_frames(results: dict) -> Optional[Tuple[int, int]]:
    """``(repeats per clip, total frames)`` if the sampled clip repeats
    frames of a short video, else None.

    Reads ``frame_inds``, ``total_frames``, ``clip_len`` and ``num_clips``
    as MMAction2's samplers set them: a clip repeats a frame only when the
    video is shorter than the clip (``SegmentSampleFrames``, ``SampleFrames``
    with ``out_of_bound_opt``, ``UniformSample``).
    """
    inds = results.get('frame_inds')
    if inds is None or 'total_frames' not in results:
        return None
    inds = np.asarray(inds).reshape(-1)
    clips = max(int(results.get('num_clips') or 1), 1)
    if inds.size == 0 or inds.size % clips:
        return None
    per_clip = inds.reshape(clips, -1)
    repeats = max(per_clip.shape[1] - np.unique(c).size for c in per_clip)
    if repeats <= 0:
        return None
    return int(repeats), int(results['total_frames'])


class BadVideoMixin:
    """``on_bad_video`` / ``max_bad_fraction`` for an MMEngine dataset.

    The dataset calls :meth:`_init_bad_video` in ``__init__`` and
    implements ``_video_context(idx, info)``; :meth:`prepare_data` does the
    rest (see the module docstring).
    """

    def _init_bad_video(self, on_bad_video: str,
                        max_bad_fraction: float) -> None:
        if on_bad_video not in ON_BAD_VIDEO:
            raise ValueError(f'on_bad_video must be one of {ON_BAD_VIDEO}, '
                             f'got {on_bad_video!r}')
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ValueError('max_bad_fraction must be in [0, 1], got '
                             f'{max_bad_fraction!r}')
        self.on_bad_video = on_bad_video
        self.max_bad_fraction = float(max_bad_fraction)
        # per loader process: each file is reported once
        self._bad_files: Dict[str, str] = {}
        self._short_reported = set()
        self._num_files: Optional[int] = None

    def _video_context(self, idx: int, info: dict) -> str:
        raise NotImplementedError

    def _count_files(self) -> int:
        if self._num_files is None:
            # the base class's info: subclasses may draw random captions
            base = super(BadVideoMixin, self)
            self._num_files = len(
                {base.get_data_info(i)['filename']
                 for i in range(len(self))}) or 1
        return self._num_files

    def _report_short(self, filename: str, results: dict) -> None:
        if filename in self._short_reported:
            return
        short = repeated_frames(results)
        if short is None:
            return
        self._short_reported.add(filename)
        repeats, total = short
        print_log(
            f'video {filename!r} has {total} frame(s), fewer than its clip '
            f'needs: {repeats} frame(s) of each clip are repeats',
            logger='current',
            level=logging.WARNING)

    def _record_bad(self, filename: str, exc: VideoLoadError) -> None:
        reason = str(exc)
        if filename not in self._bad_files:
            self._bad_files[filename] = reason
            print_log(
                f"on_bad_video='skip': skipping unreadable video {filename!r}"
                f': {reason}',
                logger='current',
                level=logging.WARNING)
        total = self._count_files()
        if len(self._bad_files) > self.max_bad_fraction * total:
            shown = '; '.join(sorted(self._bad_files)[:5])
            raise VideoLoadError(
                f'{len(self._bad_files)} of {total} video files could not '
                f'be read, more than max_bad_fraction={self.max_bad_fraction}'
                f' allows ({shown}{" ..." if len(self._bad_files) > 5 else ""}'
                f'); last error: {reason}')

    def prepare_data(self, idx: int):
        """Run the pipeline with the ``on_bad_video`` policy."""
        skipped: List[Tuple[str, str]] = []
        for _ in range(self.max_refetch + 1):
            info = self.get_data_info(idx)
            filename = str(info.get('filename'))
            seen_frames = []

            def observe(results, filename=filename, seen=seen_frames):
                if not seen and 'frame_inds' in results:
                    seen.append(True)
                    self._report_short(filename, results)

            try:
                result = run_pipeline_with_context(
                    self.pipeline,
                    info,
                    self._video_context(idx, info),
                    observe=observe)
            except VideoLoadError as exc:
                if self.on_bad_video == 'error':
                    raise
                if self.test_mode:
                    raise VideoLoadError(
                        f"{exc} (on_bad_video='skip' only applies to training"
                        ': replacing an evaluation video would change the '
                        'metric)') from exc.__cause__
                self._record_bad(filename, exc)
                skipped.append((filename, str(exc.__cause__ or exc)))
                idx = self._rand_another()
                continue
            if skipped and result is not None:
                sample = result.get('data_samples') if isinstance(
                    result, dict) else None
                if hasattr(sample, 'set_metainfo'):
                    sample.set_metainfo(dict(skipped_videos=skipped))
            return result
        raise VideoLoadError(
            f'{self.max_refetch + 1} samples in a row could not be loaded; '
            f'last: {skipped[-1][0]!r}: {skipped[-1][1]}')
