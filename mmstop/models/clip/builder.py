# Copyright (c) mmstop contributors. All rights reserved.
"""Build open_clip CLIP towers from open_clip's model configs."""
import copy
import math
from typing import Union

import open_clip
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

#: mmstop's CLIP architectures. ``vit-b32`` / ``vit-b16`` (OpenAI's ViT-B/32
#: and ViT-B/16) name open_clip's model configs
#: (``open_clip/model_configs/ViT-B-32.json``, read with
#: ``open_clip.get_model_config``); ``tiny``, a small random model for tests
#: and the demo, and ``tiny-shapes``, the CLIP that
#: ``tools/pretrain/tiny_clip.py`` pretrains (``checkpoints/README.md``),
#: are configs in open_clip's format.
CLIP_ARCHS = {
    'vit-b32':
    'ViT-B-32',
    'vit-b16':
    'ViT-B-16',
    'tiny':
    dict(
        embed_dim=64,
        vision_cfg=dict(
            image_size=64, layers=2, width=64, patch_size=16, head_width=32),
        text_cfg=dict(
            context_length=77, vocab_size=49408, width=64, heads=2, layers=2)),
    'tiny-shapes':
    dict(
        embed_dim=128,
        vision_cfg=dict(
            image_size=32, layers=4, width=128, patch_size=8, head_width=32),
        text_cfg=dict(
            context_length=32, vocab_size=49408, width=64, heads=2, layers=4)),
}

#: mmstop arch keys -> (section of the open_clip config, its key); the
#: section ``None`` is the top level. ``vision_heads`` is
#: ``width // head_width`` of ``vision_cfg``.
_ARCH_KEYS = {
    'embed_dims': (None, 'embed_dim'),
    'image_size': ('vision_cfg', 'image_size'),
    'patch_size': ('vision_cfg', 'patch_size'),
    'vision_width': ('vision_cfg', 'width'),
    'vision_layers': ('vision_cfg', 'layers'),
    'vision_heads': ('vision_cfg', 'head_width'),
    'context_length': ('text_cfg', 'context_length'),
    'vocab_size': ('text_cfg', 'vocab_size'),
    'text_width': ('text_cfg', 'width'),
    'text_heads': ('text_cfg', 'heads'),
    'text_layers': ('text_cfg', 'layers'),
}
_DEFAULTS = dict(vision_cfg=CLIPVisionCfg, text_cfg=CLIPTextCfg)


def _base_config(name: str) -> dict:
    """The open_clip config (``embed_dim``, ``vision_cfg``, ``text_cfg``)
    of an entry of :data:`CLIP_ARCHS`."""
    if name not in CLIP_ARCHS:
        raise KeyError(f'unknown CLIP arch {name!r}; choose one of '
                       f'{sorted(CLIP_ARCHS)} or pass a dict')
    cfg = CLIP_ARCHS[name]
    if isinstance(cfg, str):
        cfg = open_clip.get_model_config(cfg)
        if cfg is None:
            raise KeyError(f'open_clip {open_clip.__version__} has no model '
                           f'config {CLIP_ARCHS[name]!r} (CLIP arch {name!r})')
    return copy.deepcopy(cfg)


def _arch_from_config(cfg: dict) -> dict:
    """mmstop's flat arch dict of an open_clip config (dataclass defaults
    for the keys the config leaves out)."""
    arch = {}
    for key, (section, name) in _ARCH_KEYS.items():
        if section is None:
            arch[key] = cfg[name]
        else:
            arch[key] = cfg[section].get(name, getattr(_DEFAULTS[section],
                                                       name))
    arch['vision_heads'] = arch['vision_width'] // arch['vision_heads']
    return arch


def resolve_clip_arch(arch: Union[str, dict]) -> dict:
    """Return a full arch dict from a name in :data:`CLIP_ARCHS` or a dict.

    A dict may name a ``base`` architecture and override some of its keys;
    otherwise it must define every key (``embed_dims``, ``image_size``,
    ``patch_size``, ``vision_width``, ``vision_layers``, ``vision_heads``,
    ``context_length``, ``vocab_size``, ``text_width``, ``text_heads``,
    ``text_layers``).

    Args:
        arch (str | dict): Arch name or dict.

    Returns:
        dict: Every arch key with its value.

    Raises:
        KeyError: Unknown name or key, or a key missing.
        ValueError: ``vision_width`` not divisible by ``vision_heads``.
    """
    if isinstance(arch, str):
        return _arch_from_config(_base_config(arch))
    arch = dict(arch)
    base = arch.pop('base', None)
    full = resolve_clip_arch(base) if base is not None else {}
    unknown = sorted(set(arch) - set(_ARCH_KEYS))
    if unknown:
        raise KeyError(f'unknown CLIP arch key(s) {unknown}; expected a '
                       f'subset of {sorted(_ARCH_KEYS)}')
    full.update(arch)
    missing = sorted(set(_ARCH_KEYS) - set(full))
    if missing:
        raise KeyError(f'CLIP arch is missing key(s) {missing}')
    if full['vision_width'] % full['vision_heads']:
        raise ValueError('vision_width must be divisible by vision_heads, got '
                         f"{full['vision_width']} and {full['vision_heads']}")
    return {key: full[key] for key in _ARCH_KEYS}


def clip_config(arch: Union[str, dict]) -> dict:
    """open_clip's config (``embed_dim``, ``vision_cfg``, ``text_cfg``) for
    an mmstop ``arch``: the base's open_clip config with the arch's values
    written into it.

    Args:
        arch (str | dict): As for :func:`resolve_clip_arch`.

    Returns:
        dict: Keyword arguments of ``open_clip.model.CLIP``.
    """
    flat = resolve_clip_arch(arch)
    base = arch if isinstance(arch, str) else arch.get('base')
    cfg = _base_config(base) if base is not None else {}
    out = dict(
        embed_dim=None,
        vision_cfg=dict(cfg.get('vision_cfg', {})),
        text_cfg=dict(cfg.get('text_cfg', {})))
    for key, (section, name) in _ARCH_KEYS.items():
        if section is None:
            out[name] = flat[key]
        else:
            out[section][name] = flat[key]
    out['vision_cfg']['head_width'] = (
        flat['vision_width'] // flat['vision_heads'])
    return out


def build_open_clip(arch: Union[str, dict]) -> CLIP:
    """Build a randomly initialised open_clip ``CLIP`` with QuickGELU.

    QuickGELU matches the OpenAI checkpoints. ``logit_scale`` starts at
    ``ln(100)``, the value of the OpenAI checkpoints (temperature 0.01).
    Parameter names are OpenAI's (``visual.conv1.weight``,
    ``transformer.resblocks.0.attn.in_proj_weight``, ...).

    Args:
        arch (str | dict): As for :func:`resolve_clip_arch`.

    Returns:
        open_clip.model.CLIP: The model.
    """
    return CLIP(
        **clip_config(arch), quick_gelu=True, init_logit_scale=math.log(100.))
