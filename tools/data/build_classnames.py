# Copyright (c) mmstop contributors. All rights reserved.
"""Write the class-name file (one name per line, line i = label i) that the
STOP text classifier and ``VideoClsDataset(classnames_file=...)`` read.

The label indices follow MMAction2's file lists (``tools/data/*`` of
MMAction2): UCF101 and HMDB51 use ``classInd.txt`` (``<1-based id> <name>``;
MMAction2 writes HMDB51's from the sorted class directories), SSv2 uses
``something-something-v2-labels.json`` (``{"<template>": "<0-based id>"}``).
Names are made readable for the text encoder: ``ApplyEyeMakeup`` -> ``apply
eye makeup``, ``brush_hair`` -> ``brush hair``; SSv2 templates are kept.

Usage::

    python tools/data/build_classnames.py ucf101 data/ucf101/annotations/classInd.txt data/ucf101/classnames.txt
    python tools/data/build_classnames.py hmdb51 data/hmdb51/annotations/classInd.txt data/hmdb51/classnames.txt
    python tools/data/build_classnames.py sthv2 data/sthv2/annotations/something-something-v2-labels.json data/sthv2/classnames.txt
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List


def readable(name: str) -> str:
    """``ApplyEyeMakeup`` / ``brush_hair`` -> ``apply eye makeup`` / ``brush hair``."""
    name = name.replace('_', ' ')
    name = re.sub(r'(?<=[a-z])(?=[A-Z])', ' ', name)
    return ' '.join(name.split()).lower()


def _ordered(ids: Dict[int, str], first: int, path: str) -> List[str]:
    expected = list(range(first, first + len(ids)))
    if sorted(ids) != expected:
        missing = sorted(set(expected) - set(ids))
        raise ValueError(
            f'{path}: class ids must be {first}..{first + len(ids) - 1} without '
            f'gaps; missing {missing[:10]}')
    return [ids[i] for i in expected]


def from_class_index(path: str) -> List[str]:
    """Names from a ``classInd.txt`` (``<1-based id> <name>`` per line)."""
    ids: Dict[int, str] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[0].isdigit():
                raise ValueError(
                    f'{path}, line {lineno}: expected "<id> <ClassName>", got '
                    f'{line.rstrip()!r}')
            index = int(fields[0])
            if index in ids:
                raise ValueError(f'{path}, line {lineno}: id {index} repeats')
            ids[index] = readable(fields[1])
    if not ids:
        raise ValueError(f'{path} holds no classes')
    return _ordered(ids, 1, path)


def from_sthv2_labels(path: str) -> List[str]:
    """Names from SSv2's ``something-something-v2-labels.json``."""
    with open(path) as f:
        labels = json.load(f)
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f'{path}: expected a JSON object {{template: id}}')
    ids: Dict[int, str] = {}
    for template, index in labels.items():
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise ValueError(
                f'{path}: id of {template!r} is not an integer: {index!r}'
            ) from None
        if index in ids:
            raise ValueError(f'{path}: id {index} repeats ({template!r})')
        ids[index] = ' '.join(
            template.replace('[', '').replace(']', '').split())
    return _ordered(ids, 0, path)


READERS = {
    'ucf101': from_class_index,
    'hmdb51': from_class_index,
    'sthv2': from_sthv2_labels
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dataset', choices=sorted(READERS))
    parser.add_argument('src', help='classInd.txt or the SSv2 labels JSON')
    parser.add_argument('dst', help='output class-name file')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        sys.exit(f'error: {args.src} not found')
    names = READERS[args.dataset](args.src)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    with open(args.dst, 'w') as f:
        f.write('\n'.join(names) + '\n')
    print(f'wrote {len(names)} class names to {args.dst}')


if __name__ == '__main__':
    main()
