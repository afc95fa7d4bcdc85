# Copyright (c) mmstop contributors. All rights reserved.
"""Build open_clip CLIP towers from an ``arch`` table."""
import copy
import math
from typing import Union

from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

#: Architectures of the two CLIP towers. ``embed_dims`` is the joint
#: embedding width. ``vit-b32`` / ``vit-b16`` are OpenAI's ViT-B/32 and
#: ViT-B/16; ``tiny`` is a small random model for tests and the demo.
CLIP_ARCHS = {
    'vit-b32': dict(
        embed_dims=512, image_size=224, patch_size=32, vision_width=768,
        vision_layers=12, vision_heads=12, context_length=77,
        vocab_size=49408, text_width=512, text_heads=8, text_layers=12),
    'vit-b16': dict(
        embed_dims=512, image_size=224, patch_size=16, vision_width=768,
        vision_layers=12, vision_heads=12, context_length=77,
        vocab_size=49408, text_width=512, text_heads=8, text_layers=12),
    'tiny': dict(
        embed_dims=64, image_size=64, patch_size=16, vision_width=64,
        vision_layers=2, vision_heads=2, context_length=77,
        vocab_size=49408, text_width=64, text_heads=2, text_layers=2),
}

_REQUIRED = set(CLIP_ARCHS['vit-b32'])


def resolve_clip_arch(arch: Union[str, dict]) -> dict:
    """Return a full arch dict from a name in :data:`CLIP_ARCHS` or a dict.

    A dict may name a ``base`` architecture and override some of its keys;
    otherwise it must define every key of :data:`CLIP_ARCHS` entries.
    """
    if isinstance(arch, str):
        if arch not in CLIP_ARCHS:
            raise KeyError(f'unknown CLIP arch {arch!r}; choose one of '
                           f'{sorted(CLIP_ARCHS)} or pass a dict')
        return copy.deepcopy(CLIP_ARCHS[arch])
    arch = dict(arch)
    base = arch.pop('base', None)
    full = resolve_clip_arch(base) if base is not None else {}
    unknown = sorted(set(arch) - _REQUIRED)
    if unknown:
        raise KeyError(f'unknown CLIP arch key(s) {unknown}; expected a '
                       f'subset of {sorted(_REQUIRED)}')
    full.update(arch)
    missing = sorted(_REQUIRED - set(full))
    if missing:
        raise KeyError(f'CLIP arch is missing key(s) {missing}')
    if full['vision_width'] % full['vision_heads']:
        raise ValueError('vision_width must be divisible by vision_heads, got '
                         f"{full['vision_width']} and {full['vision_heads']}")
    return full


def build_open_clip(arch: Union[str, dict]) -> CLIP:
    """Build a randomly initialised open_clip ``CLIP`` with QuickGELU.

    QuickGELU matches the OpenAI checkpoints. ``logit_scale`` starts at
    ``ln(100)``, the value of the OpenAI checkpoints (temperature 0.01).
    Parameter names are OpenAI's (``visual.conv1.weight``,
    ``transformer.resblocks.0.attn.in_proj_weight``, ...).
    """
    a = resolve_clip_arch(arch)
    vision_cfg = CLIPVisionCfg(
        layers=a['vision_layers'],
        width=a['vision_width'],
        head_width=a['vision_width'] // a['vision_heads'],
        patch_size=a['patch_size'],
        image_size=a['image_size'])
    text_cfg = CLIPTextCfg(
        context_length=a['context_length'],
        vocab_size=a['vocab_size'],
        width=a['text_width'],
        heads=a['text_heads'],
        layers=a['text_layers'])
    return CLIP(a['embed_dims'], vision_cfg=vision_cfg, text_cfg=text_cfg,
                quick_gelu=True, init_logit_scale=math.log(100.))
