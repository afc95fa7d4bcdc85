# Copyright (c) mmstop contributors. All rights reserved.
"""Parameters and MACs of mmstop configs, per test view.

    python tools/analysis/get_flops.py configs/stop_clip_ucf101.py [...]
    python tools/analysis/get_flops.py configs/*.py --markdown  # README table
    python tools/analysis/get_flops.py CONFIG --json out.json

For every config it prints the total and the trainable parameters, the
**MACs per view** (one test view through backbone, neck and classifier),
the **MACs per forward** (paid once whatever the batch: STOP's DGL prompt
generator), the **views per test** and the input of one view (from the
config's test pipeline run on a synthetic video), and for STOP the MACs of
encoding one sentence with the prompted text encoder
(:func:`mmstop.utils.complexity.analyse` says how each is measured).

Convention: MACs (multiply-accumulates; one fused multiply-add counts once,
elementwise operators, activations and reductions are not counted, as in
fvcore and MMEngine); GFLOPs = 2 x GMACs. MACs are counted on the ``meta``
device, so full-size models take seconds; a forward that needs values (STOP
paper mode) is counted on the CPU with a random input (``counted on``).
MMAction2's ``tools/analysis_tools/get_flops.py`` traces the model and
drops the operators whose results the output does not use, and it counts
``extract_feat``, which for STOP recognizers also encodes every class name:
see the README section "FLOPs and parameters".
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import DictAction  # noqa: E402

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
from mmstop.utils import complexity  # noqa: E402

#: What the notes of :func:`analyse` mean, below the markdown table.
FOOTNOTES = {
    complexity.PLACEHOLDER_CLASSES:
    ("the config's class-name file is not there (no dataset): counted with "
     '`num_classes` placeholder names, else one; the cosine classifier adds '
     '`embed_dims` MACs per view and class (512 for ViT-B/32)'),
    complexity.CPU_COUNT:
    ('paper mode chooses its number of inter-frame prompts from the video, '
     'so the model runs (random weights, a random view); only the '
     'count-dependent linear heads vary with the input'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and MACs per test view of mmstop configs')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument(
        '--device',
        choices=['auto', 'meta', 'cpu'],
        default='auto',
        help="where the model runs while its MACs are counted: 'meta' "
        "(computes nothing), 'cpu' (a random input), 'auto' (meta, or cpu "
        'when the forward needs values; default)')
    parser.add_argument(
        '--markdown',
        action='store_true',
        help='print a markdown table (the README\'s)')
    parser.add_argument(
        '--json',
        metavar='FILE',
        help='also write the results to this JSON file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries of every config, key=value')
    return parser.parse_args(argv)


def _giga(value: Optional[int]) -> str:
    """Giga-units to 4 significant digits ('-' for None)."""
    return '-' if value is None else f'{value / 1e9:.4g}'


def markdown_table(rows: List[Dict]) -> str:
    """The rows as the README's markdown table; notes become numbered
    footnotes."""
    lines = [
        '| config | task | frames | views per test | parameters | '
        'trainable | GMACs per view | GMACs per forward | '
        'text GMACs per sentence |', '|---|---|---|---|---|---|---|---|---|'
    ]
    footnotes: List[str] = []
    for row in rows:
        marks = []
        for note in row['notes']:
            kind = note.split(':')[0]
            if kind not in footnotes:
                footnotes.append(kind)
            marks.append(str(footnotes.index(kind) + 1))
        mark = f" ({', '.join(marks)})" if marks else ''
        text = '-' if row['text_macs'] is None else (
            f"{_giga(row['text_macs'])} ({row['text_length']} tokens)")
        lines.append(f"| `{row['config']}`{mark} | {row['task']} | "
                     f"{row['num_frames']} | {row['views_per_test']} | "
                     f"{row['params']:,} | {row['trainable_params']:,} | "
                     f"{_giga(row['macs_per_view'])} | "
                     f"{_giga(row['macs_per_forward'] or None)} | {text} |")
    if footnotes:
        lines.append('')
        lines += [
            f'({i}) {kind}: {FOOTNOTES.get(kind, "")}'.rstrip(': ')
            for i, kind in enumerate(footnotes, 1)
        ]
    return '\n'.join(lines)


def text_table(rows: List[Dict]) -> str:
    """The rows as a plain-text report."""
    out = []
    for row in rows:
        out.append(
            f"{row['config']}: {row['task']}, {row['model']}\n"
            f"  parameters {row['params']:,} (trainable "
            f"{row['trainable_params']:,})\n"
            f"  input per view {' x '.join(map(str, row['view_shape']))}, "
            f"{row['views_per_test']} view(s) per test\n"
            f"  MACs per view {row['macs_per_view']:,} "
            f"({_giga(row['macs_per_view'])} GMACs, "
            f"{2 * row['macs_per_view'] / 1e9:.2f} GFLOPs), counted on "
            f"{row['counted_on']}\n"
            f"  MACs per forward (any batch) {row['macs_per_forward']:,}")
        if row['text_macs'] is not None:
            out.append(f"  text encoder MACs per sentence "
                       f"({row['text_length']} tokens) "
                       f"{row['text_macs']:,}")
        out += [f'  note: {note}' for note in row['notes']]
    return '\n'.join(out)


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = complexity.write_probe_video(osp.join(tmp, 'probe.mp4'))
        for path in args.configs:
            rows.append(
                complexity.analyse(path, video, args.device, args.cfg_options))
    if args.markdown:
        print(markdown_table(rows))
    else:
        print(text_table(rows))
    print('MACs: multiply-accumulates (one fused multiply-add counts once); '
          'GFLOPs = 2 x GMACs.')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
