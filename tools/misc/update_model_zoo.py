# Copyright (c) mmstop contributors. All rights reserved.
"""Write the measured fields of the model zoo (``model-index.yml``).

    python tools/misc/update_model_zoo.py [--check] [--models NAME ...]

For every model of the metafiles ``model-index.yml`` imports, the config is
analysed as ``tools/analysis/get_flops.py`` does
(:func:`mmstop.utils.complexity.analyse`) and these ``Metadata`` fields are
(re)written: ``Frames``, ``Resolution``, ``Views`` (per test),
``Parameters``, ``Trainable Parameters``, ``MACs per View``, ``MACs per
Forward`` (STOP's prompt generator, once per forward) and ``Text MACs per
Sentence`` (STOP), MACs in G (10^9 multiply-accumulates; GFLOPs = 2 x
GMACs). Everything else (names, papers, tasks, datasets, the papers'
results) is written by hand. ``--check`` writes nothing and exits with 1
if a field differs from the measurement, naming it.
"""
import argparse
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import yaml  # noqa: E402

from mmstop.utils.complexity import analyse, write_probe_video  # noqa: E402

#: The Metadata fields this tool owns, in their order in the metafiles.
MEASURED = ('Frames', 'Resolution', 'Views', 'Parameters',
            'Trainable Parameters', 'MACs per View', 'MACs per Forward',
            'Text MACs per Sentence')


def giga(value: int) -> str:
    """``'153.21G'``: 10^9 units to two decimals."""
    return f'{value / 1e9:.2f}G'


def measured_fields(row: Dict) -> Dict:
    """The metafile ``Metadata`` fields of one analysed config."""
    height, width = row['view_shape'][-2:]
    fields = {
        'Frames': row['num_frames'],
        'Resolution': f'{height}x{width}',
        'Views': row['views_per_test'],
        'Parameters': row['params'],
        'Trainable Parameters': row['trainable_params'],
        'MACs per View': giga(row['macs_per_view']),
    }
    if row['macs_per_forward']:
        fields['MACs per Forward'] = giga(row['macs_per_forward'])
    if row['text_macs'] is not None:
        fields['Text MACs per Sentence'] = (
            f"{giga(row['text_macs'])} ({row['text_length']} tokens)")
    return fields


def metafiles(index: str = 'model-index.yml') -> List[str]:
    """The metafiles ``index`` imports (paths relative to its folder)."""
    with open(index) as f:
        imports = yaml.safe_load(f)['Import']
    return [osp.join(osp.dirname(index), path) for path in imports]


def header(path: str) -> str:
    """The leading comment lines of a metafile (YAML drops comments)."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line)
    return ''.join(lines)


def update(path: str,
           video: str,
           check: bool,
           names: Optional[List[str]] = None) -> List[str]:
    """Measure the models of the metafile ``path`` (those in ``names``, if
    given) and write their fields, or with ``check`` only compare them.

    Returns:
        list[str]: The differences found, ``'<model>: <field> <old> ->
        <new>'``.
    """
    head = header(path)
    with open(path) as f:
        data = yaml.safe_load(f)
    changes = []
    for model in data['Models']:
        if names and model['Name'] not in names:
            continue
        row = analyse(osp.join(REPO_ROOT, model['Config']), video)
        metadata = model.setdefault('Metadata', {})
        new = measured_fields(row)
        for key in MEASURED:
            if metadata.get(key) != new.get(key):
                changes.append(f"{model['Name']}: {key} {metadata.get(key)} "
                               f'-> {new.get(key)}')
        kept = {k: v for k, v in metadata.items() if k not in MEASURED}
        model['Metadata'] = dict(kept, **new)
    if changes and not check:
        text = yaml.safe_dump(
            data, sort_keys=False, allow_unicode=True, width=200)
        with open(path, 'w') as f:
            f.write(head + text)
    return changes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--index', default=osp.join(REPO_ROOT, 'model-index.yml'))
    parser.add_argument(
        '--models', nargs='+', metavar='NAME', help='only these models')
    parser.add_argument(
        '--check',
        action='store_true',
        help='compare only; exit 1 if a field differs')
    args = parser.parse_args(argv)
    changes = []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_probe_video(osp.join(tmp, 'probe.mp4'))
        for path in metafiles(args.index):
            changes += update(path, video, args.check, args.models)
    print('\n'.join(changes) if changes else 'model zoo up to date')
    return 1 if args.check and changes else 0


if __name__ == '__main__':
    sys.exit(main())
