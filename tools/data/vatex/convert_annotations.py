# Copyright (c) mmstop contributors. All rights reserved.
"""Convert VATEX annotations to mmstop's video-text JSON.

Inputs, either of:

* the official VATEX files (``vatex_training_v1.0.json``,
  ``vatex_validation_v1.0.json``): a JSON list ``[{"videoID":
  "Ptf_2VRj-V0_000122_000132", "enCap": [10 English captions], "chCap":
  [10 Chinese captions]}, ...]``;
* or the CLIP4Clip/STOP ``ref_captions.json``: ``{"<videoID>": [captions]}``.

Optionally a split list (``train_list.txt`` / ``test_list.txt``, one video
id per line) fixes the subset and order, as in the official STOP loader (the
retrieval test split of 1500 videos is drawn from the public validation
set).

Output: one mmstop entry per video with all its captions. STOP trains on
every (video, caption) pair, i.e. ``caption_mode='unfold'``, with the
test-style frame sampling (``SegmentSampleFrames(test_mode=True)``), and
tests with every caption as a query (``caption_mode='all'``).

Usage::

    python tools/data/vatex/convert_annotations.py \\
        --vatex-json vatex_validation_v1.0.json --video-list test_list.txt \\
        --out data/vatex/vatex_test.json

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


def load_captions(path: str, caption_key: str = 'enCap') -> OrderedDict:
    """``videoID -> captions`` from a VATEX json or a ref_captions.json."""
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    captions = OrderedDict()
    if isinstance(data, dict):  # ref_captions.json
        for vid, caps in data.items():
            if not isinstance(caps, list):
                raise ValueError(f'{path}: captions of {vid!r} must be a '
                                 'list')
            captions[vid] = caps
        return captions
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a VATEX list of {{"videoID", '
                         f'"{caption_key}"}} or a {{videoID: [captions]}} '
                         'object')
    for i, item in enumerate(data):
        if not isinstance(item, dict) or 'videoID' not in item \
                or not isinstance(item.get(caption_key), list):
            raise ValueError(f'{path}: item {i} needs "videoID" and a '
                             f'"{caption_key}" list')
        captions.setdefault(item['videoID'], []).extend(item[caption_key])
    return captions


def convert(captions_json: str,
            video_list: Optional[Sequence[str]] = None,
            video_pattern: str = '{video_id}.mp4',
            caption_key: str = 'enCap') -> List[dict]:
    """mmstop entries from VATEX captions.

    Args:
        captions_json (str): VATEX json or ref_captions.json.
        video_list (Sequence[str], optional): Ids to keep, in this order; an
            id without captions raises ``ValueError`` (the official loader
            asserts the same). Defaults to all ids in file order.
        video_pattern (str): File name of a video; ``{video_id}`` is
            replaced. Defaults to ``'{video_id}.mp4'``.
        caption_key (str): Caption field of the VATEX json (``enCap`` or
            ``chCap``). Defaults to ``'enCap'``.

    Returns:
        list[dict]: Entries with ``filename``, ``video_id``, ``captions``.
    """
    captions = load_captions(captions_json, caption_key)
    ids = list(captions) if video_list is None else list(
        OrderedDict.fromkeys(video_list))
    entries = []
    for vid in ids:
        if vid not in captions:
            raise ValueError(f'video {vid!r} of the split list has no '
                             f'captions in {captions_json}')
        entries.append(
            dict(
                filename=video_pattern.format(video_id=vid),
                video_id=vid,
                captions=list(captions[vid])))
    return entries


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--vatex-json', help='vatex_*_v1.0.json')
    src.add_argument('--ref-captions', help='CLIP4Clip ref_captions.json')
    parser.add_argument('--video-list', help='train_list.txt / test_list.txt')
    parser.add_argument('--caption-key', default='enCap')
    parser.add_argument('--video-pattern', default='{video_id}.mp4')
    parser.add_argument('--out', required=True)
    add_skip_missing_args(parser)
    args = parser.parse_args(argv)
    check_skip_missing_args(parser, args)
    entries = convert(
        args.vatex_json or args.ref_captions,
        video_list=read_list(args.video_list) if args.video_list else None,
        video_pattern=args.video_pattern,
        caption_key=args.caption_key)
    write_entries(entries, args.out, args)


if __name__ == '__main__':
    sys.exit(main())
