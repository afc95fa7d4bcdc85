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

The source is read with ``torch.load(weights_only=True)`` and the types of
official training checkpoints allowed (optimizer state, numpy values,
``argparse.Namespace`` args), so no code in it can run. A file that needs
anything else is refused with the globals it asks for; ``--unsafe-load``
unpickles it fully, which runs any code it contains: only for trusted files.
A source without any VideoMamba / SSP key writes nothing.
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
    parser.add_argument(
        '--unsafe-load', action='store_true', help=UNSAFE_LOAD_HELP)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmstop.models.converters.ssp_official import (convert_official_ssp,
                                                       unwrap_official_ssp)
    if not osp.isfile(args.src):
        sys.exit(f'error: source checkpoint not found: {args.src}')
    try:
        source = unwrap_official_ssp(
            read_converter_source(args.src, args.unsafe_load), source=args.src)
        state = convert_official_ssp(
            source, ignore_prefixes=args.ignore_prefix, source=args.src)
        write_converted_checkpoint(state, args.src, args.dst,
                                   'ssp_official_to_mmstop')
    except (KeyError, CheckpointError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        sys.exit(f'error: {args.src}: {msg}')
    n_ssp = sum(k.startswith('backbone.ssp.') for k in state)
    n_head = sum(k.startswith('cls_head.') for k in state)
    print(f'converted {len(state)} of {len(source)} tensors '
          f'({len(state) - n_ssp - n_head} backbone, {n_ssp} SSP, {n_head} '
          f'head; {len(source) - len(state)} ignored): '
          f'{args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
