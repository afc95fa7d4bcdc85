# Copyright (c) mmstop contributors. All rights reserved.
"""Convert MSR-VTT annotations to mmstop's video-text JSON.

Inputs (the files used by CLIP4Clip / STOP):

* ``MSRVTT_data.json``: ``{"videos": [...], "sentences": [{"video_id":
  "video0", "caption": "...", "sen_id": 0}, ...]}`` (20 captions per video).
* ``MSRVTT_train.9k.csv``: one column ``video_id`` (9000 training videos).
* ``MSRVTT_JSFUSION_test.csv``: columns ``key,vid_key,video_id,sentence``,
  the 1k-A test split (1000 videos, one caption each).

Outputs (mmstop format, see ``mmstop/datasets/video_text_dataset.py``):

* training: one entry per video of the train csv (csv order) with all its
  captions in ``MSRVTT_data.json`` order. Train with
  ``caption_mode='unfold'`` to reproduce the official 180k-pair epochs (or
  ``'random'`` for one random caption per video and epoch).
* test: one entry per video of the test csv (first-appearance order) with
  its caption(s).

Usage::

    python tools/data/msrvtt/convert_annotations.py \\
        --data-json MSRVTT_data.json --train-csv MSRVTT_train.9k.csv \\
        --test-csv MSRVTT_JSFUSION_test.csv --out-dir data/msrvtt/annotations

Only the Python standard library is used (the code shared by the
converters is in ``tools/data/video_text_json.py``).
"""
import argparse
import csv
import json
import os.path as osp
import sys
from collections import OrderedDict
from typing import List, Optional

TOOLS_DATA = osp.dirname(osp.dirname(osp.abspath(__file__)))
if TOOLS_DATA not in sys.path:
    sys.path.insert(0, TOOLS_DATA)

from video_text_json import (
    add_skip_missing_args,  # noqa: E402
    check_skip_missing_args,
    write_entries)


def _filename(pattern: str, video_id: str) -> str:
    return pattern.format(video_id=video_id)


def read_csv_column(path: str, column: str) -> List[dict]:
    """Rows of a csv file as dicts; checks that ``column`` exists."""
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f'{path}: expected a csv header with a '
                             f'{column!r} column, got {reader.fieldnames}')
        return list(reader)


def convert_train(train_csv: str,
                  data_json: str,
                  video_pattern: str = '{video_id}.mp4') -> List[dict]:
    """Training entries: csv videos with all their MSRVTT_data.json captions.

    Args:
        train_csv (str): ``MSRVTT_train.9k.csv`` (or 7k).
        data_json (str): ``MSRVTT_data.json``.
        video_pattern (str): File name of a video; ``{video_id}`` is
            replaced. Defaults to ``'{video_id}.mp4'``.

    Returns:
        list[dict]: mmstop entries.
    """
    rows = read_csv_column(train_csv, 'video_id')
    with open(data_json, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict) or 'sentences' not in data:
        raise ValueError(f'{data_json}: expected an object with a '
                         '"sentences" list (MSRVTT_data.json)')
    captions = OrderedDict()
    for i, item in enumerate(data['sentences']):
        try:
            captions.setdefault(item['video_id'], []).append(item['caption'])
        except (KeyError, TypeError) as exc:
            raise ValueError(f'{data_json}: sentence {i} needs "video_id" '
                             f'and "caption", got {item!r}') from exc
    entries, seen = [], set()
    for row in rows:
        vid = row['video_id'].strip()
        if vid in seen:
            continue
        seen.add(vid)
        if vid not in captions:
            raise ValueError(f'{train_csv}: video {vid!r} has no caption in '
                             f'{data_json}')
        entries.append(
            dict(
                filename=_filename(video_pattern, vid),
                video_id=vid,
                captions=list(captions[vid])))
    return entries


def convert_test(test_csv: str,
                 video_pattern: str = '{video_id}.mp4') -> List[dict]:
    """Test entries from ``MSRVTT_JSFUSION_test.csv`` (1k-A).

    Args:
        test_csv (str): csv with ``video_id`` and ``sentence`` columns.
        video_pattern (str): See :func:`convert_train`.

    Returns:
        list[dict]: mmstop entries, one per video (rows of the same video
        are merged, in row order).
    """
    rows = read_csv_column(test_csv, 'video_id')
    grouped = OrderedDict()
    for i, row in enumerate(rows):
        if 'sentence' not in row or row['sentence'] is None:
            raise ValueError(f'{test_csv}: row {i + 2} has no "sentence"')
        grouped.setdefault(row['video_id'].strip(), []).append(row['sentence'])
    return [
        dict(
            filename=_filename(video_pattern, vid),
            video_id=vid,
            captions=caps) for vid, caps in grouped.items()
    ]


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-json', help='MSRVTT_data.json (training)')
    parser.add_argument('--train-csv', help='MSRVTT_train.9k.csv')
    parser.add_argument('--test-csv', help='MSRVTT_JSFUSION_test.csv')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--train-name', default='msrvtt_train_9k.json')
    parser.add_argument('--test-name', default='msrvtt_test_1k.json')
    parser.add_argument(
        '--video-pattern',
        default='{video_id}.mp4',
        help='video file name relative to the video folder; {video_id} is '
        'replaced (default: %(default)s)')
    add_skip_missing_args(parser)
    args = parser.parse_args(argv)
    if args.train_csv and not args.data_json:
        parser.error('--train-csv needs --data-json')
    if not (args.train_csv or args.test_csv):
        parser.error('give --train-csv/--data-json and/or --test-csv')
    check_skip_missing_args(parser, args)
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    jobs = []
    if args.train_csv:
        jobs.append((args.train_name,
                     convert_train(args.train_csv, args.data_json,
                                   args.video_pattern)))
    if args.test_csv:
        jobs.append(
            (args.test_name, convert_test(args.test_csv, args.video_pattern)))
    for name, entries in jobs:
        write_entries(entries, osp.join(args.out_dir, name), args)


if __name__ == '__main__':
    sys.exit(main())
