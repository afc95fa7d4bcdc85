# Copyright (c) mmstop contributors. All rights reserved.
"""Convert an official STOP checkpoint to an mmstop checkpoint.

Usage::

    python tools/model_converters/stop_official_to_mmstop.py SRC DST \
        [--prefix backbone.]

``SRC`` is a checkpoint of the official code (zhoujiahuan1991/CVPR2025-STOP,
``ckpt.pth.tar`` = ``{'state_dict': CLIP4Clip state dict, 'optimizer': ...}``,
keys ``module.clip.*`` under DDP) or a bare state dict with the official
``CLIP`` names. ``DST`` is written as ``{'state_dict': ..., 'meta': ...}`` and
loads with MMEngine's ``load_from`` / ``tools/test.py`` into an mmstop model
whose STOP backbone is ``backbone`` (recognizer or similarity model).

The source is read with ``torch.load(weights_only=True)`` and the types of
official training checkpoints allowed (optimizer state, numpy values,
``argparse.Namespace`` args), so no code in it can run. A file that needs
anything else is refused with the globals it asks for; ``--unsafe-load``
unpickles it fully, which runs any code it contains: only for trusted files.
A source with keys that are not official STOP/CLIP parameters, or with no
parameter at all, writes nothing.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # a checkout's mmstop, installed or not

# yapf: disable
from mmstop.utils.checkpoint import (UNSAFE_LOAD_HELP,  # noqa: E402
                                     CheckpointError, read_converter_source,
                                     write_converted_checkpoint)
# yapf: enable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official STOP checkpoint to mmstop')
    parser.add_argument('src', help='official checkpoint or state dict')
    parser.add_argument('dst', help='output mmstop checkpoint')
    parser.add_argument(
        '--prefix',
        default='backbone.',
        help="prefix of the STOP backbone in the mmstop model "
        "(default 'backbone.'; use '' for a bare STOPCLIP)")
    parser.add_argument(
        '--unsafe-load', action='store_true', help=UNSAFE_LOAD_HELP)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmstop.models.converters import convert_official_stop
    if not osp.isfile(args.src):
        sys.exit(f'error: source checkpoint not found: {args.src}')
    try:
        checkpoint = read_converter_source(args.src, args.unsafe_load)
        state = convert_official_stop(
            checkpoint, prefix=args.prefix, source=args.src)
        write_converted_checkpoint(state, args.src, args.dst,
                                   'stop_official_to_mmstop')
    except (KeyError, CheckpointError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f'error: {args.src}: {msg}')
    n_clip = sum(k.startswith(args.prefix + 'clip.') for k in state)
    print(f'converted {len(state)} tensors ({n_clip} CLIP, '
          f'{len(state) - n_clip} STOP/DGL prompt modules and adapters): '
          f'{args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
