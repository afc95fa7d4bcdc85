# Copyright (c) mmstop contributors. All rights reserved.
"""Convert an official STOP checkpoint to an mmstop checkpoint.

Usage::

    python tools/model_converters/stop_official_to_mmstop.py SRC DST [--prefix backbone.]

``SRC`` is a checkpoint of the official code (zhoujiahuan1991/CVPR2025-STOP,
``ckpt.pth.tar`` = ``{'state_dict': CLIP4Clip state dict, 'optimizer': ...}``,
keys ``module.clip.*`` under DDP) or a bare state dict with the official
``CLIP`` names. ``DST`` is written as ``{'state_dict': ..., 'meta': ...}`` and
loads with MMEngine's ``load_from`` / ``tools/test.py`` into an mmstop model
whose STOP backbone is ``backbone`` (recognizer or similarity model).

The source is unpickled with ``weights_only=False`` (official checkpoints
hold optimizer state): convert only files you trust.
"""
import argparse
import os.path as osp
import sys

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official STOP checkpoint to mmstop')
    parser.add_argument('src', help='official checkpoint or state dict')
    parser.add_argument('dst', help='output mmstop checkpoint')
    parser.add_argument(
        '--prefix', default='backbone.',
        help="prefix of the STOP backbone in the mmstop model "
        "(default 'backbone.'; use '' for a bare STOPCLIP)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmstop.models.converters import convert_official_stop
    if not osp.isfile(args.src):
        sys.exit(f'error: source checkpoint not found: {args.src}')
    checkpoint = torch.load(args.src, map_location='cpu', weights_only=False)
    state = convert_official_stop(checkpoint, prefix=args.prefix)
    torch.save(
        dict(state_dict=state,
             meta=dict(converted_from=osp.abspath(args.src),
                       converter='stop_official_to_mmstop')), args.dst)
    print(f'converted {len(state)} tensors: {args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
