# Copyright (c) mmstop contributors. All rights reserved.
"""Convert DiDeMo annotations to mmstop's video-text JSON.

Input: ``train_data.json`` / ``val_data.json`` / ``test_data.json`` of
DiDeMo (LocalizingMoments), a JSON list of moments ``{"video":
"<flickr id>.<ext>", "description": "...", "times": [[s, e], ...],
"annotation_id": ..., ...}``; optionally the split list (``test_list.txt``,
one video per line) that fixes the subset, as the official STOP/CLIP4Clip
loader does.

Output: one mmstop entry per video (first-appearance order in the json) with
its descriptions as separate captions, in json order. STOP evaluates DiDeMo
as paragraph-to-video retrieval: load with ``paragraph=True`` (descriptions
joined with a space, as the official loader does), 64 frames, 64 tokens.

Time window: the official loader reads every video from 0 to 31 s (DiDeMo
annotations cover the first 30 s, in 5-s chunks), so entries get
``"end_sec": 31`` by default; ``--end-sec 0`` writes no window (whole video).

The official loader also drops three files missing from its copy
(``37996615073@N01_3336195519_579ea4136c.3gp``,
``44124421772@N01_2867159874_e39e716b7e.mpg``,
``59627558@N00_4659075184_253744838b.3gp``); use ``--exclude`` for those or
``--video-root ... --skip-missing`` for whatever your copy lacks.

Usage::

    python tools/data/didemo/convert_annotations.py \\
        --data-json test_data.json --video-list test_list.txt \\
        --video-pattern '{video}.mp4' --out data/didemo/didemo_test.json

Only the Python standard library is used (the code shared by the
converters is in ``tools/data/video_text_json.py``).
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict
from typing import List, Optional, Sequence

TOOLS_DATA = osp.dirname(osp.dirname(osp.abspath(__file__)))
if TOOLS_DATA not in sys.path:
    sys.path.insert(0, TOOLS_DATA)

from video_text_json import (
    add_skip_missing_args,  # noqa: E402
    check_skip_missing_args,
    read_list,
    write_entries)


def convert(data_json: str,
            video_list: Optional[Sequence[str]] = None,
            video_pattern: str = '{video}',
            end_sec: Optional[float] = 31.0,
            exclude: Sequence[str] = ()) -> List[dict]:
    """mmstop entries from a DiDeMo data file.

    Args:
        data_json (str): ``{train,val,test}_data.json``.
        video_list (Sequence[str], optional): Videos to keep. Defaults to
            all videos of the json.
        video_pattern (str): File name of a video; ``{video}`` is the
            json's ``video`` field (which includes its original extension).
            Defaults to ``'{video}'``.
        end_sec (float, optional): Time window end written to every entry
            (official: 31); None or 0 writes none. Defaults to 31.0.
        exclude (Sequence[str]): Videos to drop. Defaults to ().

    Returns:
        list[dict]: Entries with ``filename``, ``video_id``, ``captions``
        and ``end_sec``.
    """
    with open(data_json, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f'{data_json}: expected a JSON list of moments '
                         '{"video", "description", "times", ...}')
    keep = None if video_list is None else set(video_list)
    excluded = set(exclude)
    grouped = OrderedDict()
    for i, item in enumerate(data):
        if not isinstance(item, dict) or 'video' not in item \
                or 'description' not in item:
            raise ValueError(f'{data_json}: moment {i} needs "video" and '
                             f'"description", got {item!r}')
        video = item['video']
        if video in excluded or (keep is not None and video not in keep):
            continue
        grouped.setdefault(video, []).append(item['description'])
    if keep is not None and len(grouped) < len(keep - excluded):
        print(f'{len(keep - excluded) - len(grouped)} listed videos have no '
              f'description in {data_json}')
    entries = []
    for video, captions in grouped.items():
        entry = dict(
            filename=video_pattern.format(video=video),
            video_id=video,
            captions=captions)
        if end_sec:
            entry['end_sec'] = float(end_sec)
        entries.append(entry)
    return entries


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-json', required=True)
    parser.add_argument('--video-list', help='e.g. test_list.txt')
    parser.add_argument(
        '--video-pattern',
        default='{video}',
        help='{video} = the json "video" field (default: %(default)s)')
    parser.add_argument(
        '--end-sec',
        type=float,
        default=31.0,
        help='time window end in seconds, 0 for none (default: %(default)s, '
        'as the official loader)')
    parser.add_argument('--exclude', nargs='*', default=[])
    parser.add_argument('--out', required=True)
    add_skip_missing_args(parser)
    args = parser.parse_args(argv)
    check_skip_missing_args(parser, args)
    entries = convert(
        args.data_json,
        video_list=read_list(args.video_list) if args.video_list else None,
        video_pattern=args.video_pattern,
        end_sec=args.end_sec,
        exclude=args.exclude)
    write_entries(entries, args.out, args, 'descriptions')


if __name__ == '__main__':
    sys.exit(main())
