# Copyright (c) mmstop contributors. All rights reserved.
"""Convert an official SSP / VideoMamba checkpoint to an mmstop checkpoint.

Usage::

    python tools/model_converters/ssp_official_to_mmstop.py SRC DST \
        [--ignore-prefix distill_head.]

``SRC`` is a state dict of the official code (zhoujiahuan1991/NeurIPS2025-SSP
``VisionMamba`` with or without SSP, or a published VideoMamba checkpoint of
OpenGVLab/VideoMamba), bare or wrapped in ``model`` / ``module`` /
``state_dict``; ``backbone.`` / ``encoder.`` prefixes are removed. Keys map
to an mmstop recognizer (``Recognizer3D`` with a ``VideoMamba`` backbone and
a linear head with ``fc_cls``, e.g. ``TimeSformerHead``)::

    cls_token, pos_embed, layers.*, norm_f.* ...  -> backbone.<key>
    inner_prompt.*, prompt_attentions.*, dynamic_scales.*
                                                 -> backbone.ssp.<key>
    head.weight / head.bias                -> cls_head.fc_cls.weight / bias

Any other key is an error (name it with ``--ignore-prefix`` to drop it).
``DST`` is written as ``{'state_dict': ..., 'meta': ...}`` for MMEngine's
``load_from`` / ``tools/test.py``. Shape adaptations (2-D image patch kernel,
position embeddings of another size) happen when the result is loaded.

The source is unpickled with ``weights_only=False`` (official checkpoints
hold optimizer state): convert only files you trust.
"""
import argparse
import os.path as osp
import sys

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official SSP / VideoMamba checkpoint to '
        'mmstop (backbone.* + cls_head.fc_cls.*)')
    parser.add_argument('src', help='official checkpoint or state dict')
    parser.add_argument('dst', help='output mmstop checkpoint')
    parser.add_argument(
        '--ignore-prefix',
        action='append',
        default=[],
        metavar='PREFIX',
        help='drop source keys starting with PREFIX (repeatable), e.g. '
        'distill_head.')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmstop.models.backbones.videomamba_checkpoint import (
        convert_official_state_dict, unwrap_state_dict)
    if not osp.isfile(args.src):
        sys.exit(f'error: source checkpoint not found: {args.src}')
    checkpoint = torch.load(args.src, map_location='cpu', weights_only=False)
    try:
        state = convert_official_state_dict(
            unwrap_state_dict(checkpoint, source=args.src),
            ignore_prefixes=args.ignore_prefix)
    except (KeyError, TypeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f'error: {args.src}: {msg}')
    torch.save(
        dict(
            state_dict=state,
            meta=dict(
                converted_from=osp.abspath(args.src),
                converter='ssp_official_to_mmstop')), args.dst)
    n_ssp = sum(k.startswith('backbone.ssp.') for k in state)
    n_head = sum(k.startswith('cls_head.') for k in state)
    print(f'converted {len(state)} tensors ({n_ssp} SSP, {n_head} head): '
          f'{args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
