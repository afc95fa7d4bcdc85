# Copyright (c) mmstop contributors. All rights reserved.
"""What the video-text converters (``tools/data/*/convert_annotations.py``)
share: reading a split list, the ``--video-root`` / ``--skip-missing``
options and writing mmstop's video-text JSON (the format is described in
``mmstop/datasets/video_text_dataset.py``).

Only the Python standard library is used, so that the converters run
without torch / MMAction2; each converter puts this folder on ``sys.path``
and imports this module.
"""
import argparse
import json
import os
import os.path as osp
from typing import List


def read_list(path: str) -> List[str]:
    """One video per line (blank lines ignored, whitespace stripped)."""
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def filter_missing(entries: List[dict], video_root: str) -> List[dict]:
    """Drop entries whose video file is not under ``video_root``."""
    kept = [
        e for e in entries if osp.exists(osp.join(video_root, e['filename']))
    ]
    if len(kept) != len(entries):
        print(f'dropped {len(entries) - len(kept)} of {len(entries)} videos '
              f'not found under {video_root}')
    return kept


def dump(entries: List[dict], path: str, noun: str = 'captions') -> None:
    """Write entries as JSON (creating the folder).

    Args:
        entries (list[dict]): mmstop video-text entries.
        path (str): Output file.
        noun (str): What the dataset calls a caption, for the summary line
            (``'sentences'``, ``'descriptions'``). Defaults to
            ``'captions'``.
    """
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(entries, f, ensure_ascii=False, indent=1)
    n_cap = sum(len(e['captions']) for e in entries)
    print(f'wrote {path}: {len(entries)} videos, {n_cap} {noun}')


def add_skip_missing_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--video-root`` and ``--skip-missing``; check them with
    :func:`check_skip_missing_args` after parsing."""
    parser.add_argument(
        '--video-root',
        help='with --skip-missing: drop videos not found in this folder')
    parser.add_argument('--skip-missing', action='store_true')


def check_skip_missing_args(parser: argparse.ArgumentParser,
                            args: argparse.Namespace) -> None:
    """Exit with a usage error when ``--skip-missing`` has no
    ``--video-root``."""
    if args.skip_missing and not args.video_root:
        parser.error('--skip-missing needs --video-root')


def write_entries(entries: List[dict],
                  path: str,
                  args: argparse.Namespace,
                  noun: str = 'captions') -> None:
    """Write ``entries`` to ``path``, first dropping the videos missing
    under ``args.video_root`` when ``args.skip_missing`` (the options of
    :func:`add_skip_missing_args`)."""
    if args.skip_missing:
        entries = filter_missing(entries, args.video_root)
    dump(entries, path, noun)
