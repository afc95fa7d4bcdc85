# Copyright (c) mmstop contributors. All rights reserved.
"""Video-text retrieval dataset (``VideoTextRetrievalDataset``).

Annotation format (what ``tools/data/*/convert_annotations.py`` write): a
JSON **list**, one entry per video::

    [
      {"filename": "video7020.mp4",                 # required, relative to
                                                    #   data_prefix['video']
       "captions": ["a woman creating a fondant baby and flower", "..."],
                                                    # required, >= 1 string
       "video_id": "video7020",                     # optional (default: the
                                                    #   file name without
                                                    #   extension)
       "start_sec": 0.0, "end_sec": 31.0},          # optional time window
      ...
    ]

Any other field is kept in the sample's data info. MMAction2's
``VideoTextDataset`` format, a JSON object ``{"filename": [captions]}``, is
accepted too. ``start_sec`` / ``end_sec`` restrict frame sampling to that
window (see :class:`~mmstop.datasets.transforms.SegmentSampleFrames`; the
official DiDeMo loader reads only the first 31 s).

Caption modes (``caption_mode``):

* ``'random'`` (training default): one sample per video; each time a sample
  is loaded one of its captions is drawn uniformly with ``numpy.random``
  (official MSR-VTT loader with ``unfold_sentences=False``).
* ``'unfold'``: one sample per (video, caption) pair, i.e. an epoch visits
  every caption once (official MSR-VTT 9k training, 180k pairs, and VATEX).
* ``'all'`` (test default): one sample per video carrying all its captions;
  every caption is a text query of the retrieval metric. The caption ->
  video mapping of the whole split is :meth:`get_text_to_video`; the metric
  rebuilds the same mapping from per-sample caption counts.

``paragraph=True`` (ActivityNet, DiDeMo) joins a video's captions, each
stripped, with ``paragraph_sep`` into one caption before any mode applies.

Each sample's data info holds ``filename`` (joined with the prefix),
``video_id``, ``video_index`` (position of the video in the annotation
file after filtering), ``text`` (a list of caption strings: one in
``'random'`` / ``'unfold'`` mode, all in ``'all'`` mode),
``caption_index`` (which caption, ``'random'`` / ``'unfold'`` only),
``sample_idx``, optional ``start_sec`` / ``end_sec`` and MMAction2's
``modality`` / ``start_index``.

Bad input:

* A video file that does not exist raises ``FileNotFoundError`` naming the
  annotation file, the entry and the path (``check_videos=True``, default;
  set False for remote storage).
* An empty or blank caption raises ``AnnotationError`` naming the annotation
  file, the entry, the video and the caption index
  (``empty_caption='error'``, default), or, with ``empty_caption='skip'``,
  is dropped with one logged count; a video left without any caption is
  then dropped too (also logged), which removes it from a test gallery.
* Over-long captions are not the dataset's business: ``TokenizeText``
  truncates them and logs the count.
* A video listed twice, a missing ``filename``/``captions`` field, or a
  non-string caption raise ``AnnotationError`` (a ``ValueError``) naming the
  file and entry.
* A video that cannot be decoded raises ``VideoLoadError`` naming the video
  and the annotation file (pipeline run through
  :func:`~mmstop.datasets.errors.run_pipeline_with_context`).
"""
import json
import logging
import os.path as osp
from typing import Callable, Dict, List, Optional, Union

import numpy as np
from mmaction.datasets import BaseActionDataset
from mmengine.fileio import exists as file_exists
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmstop.registry import DATASETS
from .bad_video import BadVideoMixin
from .video_cls_dataset import AnnotationError

_CAPTION_MODES = ('random', 'unfold', 'all')
_EMPTY_POLICIES = ('error', 'skip')
_RESERVED = ('text', 'caption_index', 'video_index', 'sample_idx')


def load_video_text_annotations(ann_file: str) -> List[dict]:
    """Read and validate an mmstop video-text annotation file.

    Args:
        ann_file (str): JSON file in the format of the module docstring (or
            MMAction2's ``{"filename": [captions]}`` object).

    Returns:
        list[dict]: The entries, each with ``filename`` and ``captions``
        (a list of str, possibly holding empty strings: the empty-caption
        policy is the dataset's).

    Raises:
        FileNotFoundError: If ``ann_file`` does not exist.
        AnnotationError: (a ``ValueError``) if the structure is wrong, with
            the file and entry named.
    """
    if not file_exists(ann_file):
        raise FileNotFoundError(f'annotation file {ann_file} does not exist')
    with get_local_path(ann_file) as local:
        with open(local, encoding='utf-8') as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as exc:
                raise AnnotationError(
                    f'{ann_file} is not valid JSON: {exc}') from exc
    if isinstance(raw, dict):  # MMAction2 VideoTextDataset format
        raw = [dict(filename=k, captions=v) for k, v in raw.items()]
    if not isinstance(raw, list):
        raise AnnotationError(
            f'{ann_file}: expected a JSON list of {{"filename": ..., '
            f'"captions": [...]}} entries, got {type(raw).__name__}')
    entries = []
    seen = {}
    for i, entry in enumerate(raw):
        where = f'{ann_file}, entry {i}'
        if not isinstance(entry, dict):
            raise AnnotationError(
                f'{where}: expected an object with "filename" and '
                f'"captions", got {type(entry).__name__}')
        filename = entry.get('filename')
        if not isinstance(filename, str) or not filename:
            raise AnnotationError(f'{where}: "filename" must be a '
                                  f'non-empty string, got {filename!r}')
        captions = entry.get('captions')
        if isinstance(captions, str) or not isinstance(captions, list):
            raise AnnotationError(
                f'{where} (video {filename!r}): "captions" must be a list of '
                f'strings, got {type(captions).__name__}')
        for k, cap in enumerate(captions):
            if not isinstance(cap, str):
                raise AnnotationError(
                    f'{where} (video {filename!r}): caption {k} must be a '
                    f'string, got {type(cap).__name__}: {cap!r}')
        if filename in seen:
            raise AnnotationError(
                f'{where}: video {filename!r} is listed again (first at entry '
                f'{seen[filename]}); merge its captions into one entry')
        seen[filename] = i
        for key in ('start_sec', 'end_sec'):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))):
                raise AnnotationError(
                    f'{where} (video {filename!r}): "{key}" must be a '
                    f'number, got {value!r}')
        if (entry.get('start_sec') is not None
                and entry.get('end_sec') is not None
                and entry['start_sec'] >= entry['end_sec']):
            raise AnnotationError(
                f'{where} (video {filename!r}): start_sec '
                f'{entry["start_sec"]} must be < end_sec {entry["end_sec"]}')
        bad = [k for k in _RESERVED if k in entry]
        if bad:
            raise AnnotationError(
                f'{where} (video {filename!r}): field(s) {bad} are set by '
                'the dataset and may not appear in the annotation')
        entries.append(dict(entry))
    return entries


@DATASETS.register_module()
class VideoTextRetrievalDataset(BadVideoMixin, BaseActionDataset):
    """Videos with several captions each, for text-video retrieval.

    See the module docstring for the annotation format, the caption modes
    and the bad-input rules.

    Args:
        ann_file (str): Annotation JSON file.
        pipeline (list[dict | Callable]): Data transforms.
        data_prefix (dict): ``dict(video=<folder of the videos>)``.
            Defaults to ``dict(video='')``.
        test_mode (bool): Test/validation split. Defaults to False.
        caption_mode (str, optional): ``'random'``, ``'unfold'`` or
            ``'all'``. Defaults to None: ``'all'`` if ``test_mode`` else
            ``'random'``.
        paragraph (bool): Join each video's captions into one paragraph.
            Defaults to False.
        paragraph_sep (str): Separator of the joined captions.
            Defaults to ``' '``.
        empty_caption (str): ``'error'`` or ``'skip'``. Defaults to
            ``'error'``.
        check_videos (bool): Check at load time that every video file
            exists. Defaults to True.
        on_bad_video (str): ``'error'`` or ``'skip'`` (training only), see
            :mod:`mmstop.datasets.bad_video`. Defaults to ``'error'``.
        max_bad_fraction (float): With ``'skip'``, stop once more than this
            fraction of the video files could not be read.
            Defaults to 0.1.
        **kwargs: Passed to MMAction2's ``BaseActionDataset`` /
            MMEngine's ``BaseDataset`` (``indices``, ``serialize_data``,
            ``lazy_init``, ...).
    """

    def __init__(self,
                 ann_file: str,
                 pipeline: List[Union[dict, Callable]],
                 data_prefix: Optional[dict] = None,
                 test_mode: bool = False,
                 caption_mode: Optional[str] = None,
                 paragraph: bool = False,
                 paragraph_sep: str = ' ',
                 empty_caption: str = 'error',
                 check_videos: bool = True,
                 on_bad_video: str = 'error',
                 max_bad_fraction: float = 0.1,
                 **kwargs) -> None:
        self._init_bad_video(on_bad_video, max_bad_fraction)
        if caption_mode is None:
            caption_mode = 'all' if test_mode else 'random'
        if caption_mode not in _CAPTION_MODES:
            raise ValueError(f'caption_mode must be one of {_CAPTION_MODES}, '
                             f'got {caption_mode!r}')
        if empty_caption not in _EMPTY_POLICIES:
            raise ValueError(f'empty_caption must be one of '
                             f'{_EMPTY_POLICIES}, got {empty_caption!r}')
        self.caption_mode = caption_mode
        self.paragraph = paragraph
        self.paragraph_sep = paragraph_sep
        self.empty_caption = empty_caption
        self.check_videos = check_videos
        super().__init__(
            ann_file,
            pipeline=pipeline,
            data_prefix=dict(video='') if data_prefix is None else data_prefix,
            test_mode=test_mode,
            **kwargs)

    def _clean_captions(self, entries: List[dict]) -> List[dict]:
        """Apply the empty-caption policy and paragraph mode."""
        kept = []
        skipped_captions = 0
        dropped = []
        for i, entry in enumerate(entries):
            captions = []
            for k, cap in enumerate(entry['captions']):
                if cap.strip():
                    captions.append(cap)
                elif self.empty_caption == 'error':
                    raise AnnotationError(
                        f'{self.ann_file}, entry {i} (video '
                        f'{entry["filename"]!r}): caption {k} is empty; fix '
                        "the annotation or set empty_caption='skip'")
                else:
                    skipped_captions += 1
            if not captions:
                if self.empty_caption == 'error':
                    raise AnnotationError(
                        f'{self.ann_file}, entry {i} (video '
                        f'{entry["filename"]!r}): the video has no caption; '
                        "fix the annotation or set empty_caption='skip'")
                dropped.append(entry['filename'])
                continue
            if self.paragraph:
                captions = [
                    self.paragraph_sep.join(c.strip() for c in captions)
                ]
            entry = dict(entry, captions=captions)
            kept.append(entry)
        if skipped_captions or dropped:
            print_log(
                f'{self.ann_file}: skipped {skipped_captions} empty '
                f'caption(s); dropped {len(dropped)} of {len(entries)} '
                f'video(s) left without caption'
                f'{" (first: " + repr(dropped[0]) + ")" if dropped else ""}',
                logger='current',
                level=logging.WARNING)
        return kept

    def load_data_list(self) -> List[Dict]:
        """Load the annotation file (see the module docstring)."""
        entries = self._clean_captions(
            load_video_text_annotations(self.ann_file))
        prefix = self.data_prefix.get('video', '') or ''
        data_list = []
        missing = []
        for video_index, entry in enumerate(entries):
            info = dict(entry)
            rel = info['filename']
            info['filename'] = osp.join(prefix, rel) if prefix else rel
            if not isinstance(info.get('video_id'), str):
                info['video_id'] = osp.splitext(osp.basename(rel))[0]
            info['video_index'] = video_index
            if self.check_videos and not file_exists(info['filename']):
                missing.append((video_index, info['filename']))
            if self.caption_mode == 'unfold':
                captions = info.pop('captions')
                for k, cap in enumerate(captions):
                    data_list.append(dict(info, text=[cap], caption_index=k))
            else:
                data_list.append(info)
        if missing:
            idx, path = missing[0]
            raise FileNotFoundError(
                f'{self.ann_file}: {len(missing)} of {len(entries)} video '
                f'file(s) do not exist; first: {path!r} (entry {idx}, '
                f'data_prefix video={prefix!r}). Fix the paths or set '
                'check_videos=False.')
        return data_list

    def get_data_info(self, idx: int) -> dict:
        """Data info of sample ``idx``, with the caption(s) chosen."""
        info = super().get_data_info(idx)
        if self.caption_mode == 'random':
            captions = info.pop('captions')
            k = int(np.random.randint(len(captions)))
            info['text'] = [captions[k]]
            info['caption_index'] = k
        elif self.caption_mode == 'all':
            info['text'] = list(info.pop('captions'))
        return info

    def _video_context(self, idx: int, info: dict) -> str:
        """Error messages name the video and its annotation entry."""
        return (f'video {info["filename"]!r} (entry {info["video_index"]} '
                f'of {self.ann_file})')

    def get_text_to_video(self) -> np.ndarray:
        """Video index (0-based, in sample order) of every caption query.

        For ``'all'`` mode: the captions of sample 0, then sample 1, ...;
        for ``'unfold'`` mode: one caption per sample, videos numbered in
        order of first appearance. This is the ``text_to_video`` argument of
        :func:`mmstop.evaluation.retrieval_metrics` for this split and what
        :class:`~mmstop.evaluation.VideoTextRetrievalMetric` rebuilds.

        Returns:
            np.ndarray: int64 [num_captions].
        """
        if self.caption_mode == 'random':
            raise ValueError("get_text_to_video is defined for caption_mode "
                             "'all' and 'unfold' (every caption is a query), "
                             "not 'random'")
        out = []
        video_pos = {}
        for i in range(len(self)):
            info = super().get_data_info(i)
            pos = video_pos.setdefault(info['video_index'], len(video_pos))
            count = len(info['captions']) if 'captions' in info else 1
            out.extend([pos] * count)
        return np.asarray(out, dtype=np.int64)
