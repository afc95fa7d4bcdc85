# Copyright (c) mmstop contributors. All rights reserved.
"""Convert ActivityNet Captions annotations to mmstop's video-text JSON.

Input: ``train.json`` / ``val_1.json`` of ActivityNet Captions, an object
``{"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], ...],
"sentences": ["A young woman ...", " The girl dances ...", ...]}, ...}``.
Optionally the id lists ``train_ids.json`` / ``val_ids.json`` (a JSON list of
keys, or a text file with one key per line) fix the subset and the order, as
in the official STOP loader, and ``video_path.json`` (``{"QOlSCBRmfWY":
"QOlSCBRmfWY.avi", ...}``, keys without ``v_``) maps ids to files.

Output: one mmstop entry per video with its sentences as separate captions
(whitespace kept; the dataset strips them) plus ``duration`` and
``timestamps``. STOP evaluates ActivityNet as paragraph-to-video retrieval:
load with ``paragraph=True`` (the sentences are joined with a space, like the
official loader's ``" ".join(sentences)`` after whitespace cleaning), 64
frames and 64 tokens. The official loader reads the whole video
(0 ... ceil(duration) s), so no time window is written.

The official loader drops the broken video ``v_NHznDFD3V3k`` (in
``val_ids.json``); pass ``--exclude v_NHznDFD3V3k`` to do the same.

Usage::

    python tools/data/activitynet/convert_annotations.py \\
        --captions val_1.json --ids val_ids.json \\
        --exclude v_NHznDFD3V3k --out data/anet/anet_val_1.json

Only the Python standard library is used (the code shared by the
converters is in ``tools/data/video_text_json.py``).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

TOOLS_DATA = osp.dirname(osp.dirname(osp.abspath(__file__)))
if TOOLS_DATA not in sys.path:
    sys.path.insert(0, TOOLS_DATA)

from video_text_json import (
    add_skip_missing_args,  # noqa: E402
    check_skip_missing_args,
    write_entries)


def read_id_list(path: str) -> List[str]:
    """Ids from a JSON list or a text file with one id per line."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    try:
        ids = json.loads(text)
    except json.JSONDecodeError:
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f'{path}: expected a JSON list of video ids or one '
                         'id per line')
    return ids


def _youtube_id(key: str) -> str:
    return key[2:] if key.startswith('v_') else key


def convert(
    captions_json: str,
    ids: Optional[Sequence[str]] = None,
    video_pattern: str = '{video_id}.mp4',
    video_paths: Optional[Dict[str, str]] = None,
    exclude: Sequence[str] = ()
) -> List[dict]:
    """mmstop entries from an ActivityNet Captions file.

    Args:
        captions_json (str): ``train.json`` or ``val_1.json``.
        ids (Sequence[str], optional): Keys (``v_...``) to keep, in this
            order; ids without captions are skipped (counted), repeats are
            ignored. Defaults to all keys in file order.
        video_pattern (str): File name of a video; ``{video_id}`` is the key
            (``v_QOlSCBRmfWY``) and ``{youtube_id}`` the key without
            ``v_``. Defaults to ``'{video_id}.mp4'``.
        video_paths (dict, optional): ``youtube_id -> file`` (the official
            ``video_path.json``); when given it overrides ``video_pattern``
            and videos missing from it are skipped (counted), as in the
            official loader. Defaults to None.
        exclude (Sequence[str]): Keys (with or without ``v_``) to drop.
            Defaults to ().

    Returns:
        list[dict]: Entries with ``filename``, ``video_id``, ``captions``,
        ``duration`` and ``timestamps``.
    """
    with open(captions_json, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f'{captions_json}: expected an object mapping '
                         'video ids to {duration, timestamps, sentences}')
    excluded = {_youtube_id(e) for e in exclude}
    keys = list(data) if ids is None else list(ids)
    entries, seen = [], set()
    no_caption = no_path = 0
    for key in keys:
        if key in seen or _youtube_id(key) in excluded:
            continue
        seen.add(key)
        item = data.get(key)
        if item is None:
            no_caption += 1
            continue
        sentences = item.get('sentences') if isinstance(item, dict) else None
        if not isinstance(sentences, list):
            raise ValueError(f'{captions_json}: video {key!r} needs a '
                             '"sentences" list')
        yid = _youtube_id(key)
        if video_paths is not None:
            if yid not in video_paths:
                no_path += 1
                continue
            filename = video_paths[yid]
        else:
            filename = video_pattern.format(video_id=key, youtube_id=yid)
        entry = dict(filename=filename, video_id=key, captions=sentences)
        for field in ('duration', 'timestamps'):
            if field in item:
                entry[field] = item[field]
        entries.append(entry)
    if no_caption:
        print(f'skipped {no_caption} ids without captions in '
              f'{captions_json}')
    if no_path:
        print(f'skipped {no_path} videos missing from the video path map')
    return entries


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--captions', required=True, help='train.json or val_1.json')
    parser.add_argument('--ids', help='train_ids.json / val_ids.json')
    parser.add_argument('--video-path-json', help='official video_path.json')
    parser.add_argument(
        '--video-pattern',
        default='{video_id}.mp4',
        help='{video_id} = key (v_...), {youtube_id} = key without v_ '
        '(default: %(default)s)')
    parser.add_argument(
        '--exclude',
        nargs='*',
        default=[],
        help='video ids to drop (official: v_NHznDFD3V3k)')
    parser.add_argument('--out', required=True)
    add_skip_missing_args(parser)
    args = parser.parse_args(argv)
    check_skip_missing_args(parser, args)
    video_paths = None
    if args.video_path_json:
        with open(args.video_path_json, encoding='utf-8') as f:
            video_paths = json.load(f)
    entries = convert(
        args.captions,
        ids=read_id_list(args.ids) if args.ids else None,
        video_pattern=args.video_pattern,
        video_paths=video_paths,
        exclude=args.exclude)
    write_entries(entries, args.out, args, 'sentences')


if __name__ == '__main__':
    sys.exit(main())
