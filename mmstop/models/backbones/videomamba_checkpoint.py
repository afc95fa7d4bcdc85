# Copyright (c) mmstop contributors. All rights reserved.
"""Checkpoint handling for :class:`~mmstop.models.backbones.VideoMamba`.

* :func:`adapt_videomamba_state_dict` is the state-dict pre-hook that every
  ``load_state_dict`` of a VideoMamba backbone runs (``load_from``,
  ``init_cfg``, plain PyTorch): it inflates a 2-D (image) patch kernel to 3-D,
  resizes ``pos_embed`` (bicubic) and ``temporal_pos_embedding`` (linear) to
  the model, accepts the official SSP names (``inner_prompt.*``,
  ``prompt_attentions.*``, ``dynamic_scales.*``) for the backbone's ``ssp.*``
  and raises a clear error for any other shape mismatch.
* :func:`load_videomamba_checkpoint` reads a published VideoMamba / official
  SSP checkpoint file (``['model']`` / ``['module']`` / ``['state_dict']``
  wrappers, ``backbone.`` / ``encoder.`` prefixes) into a backbone or a
  recognizer holding one (``head.*`` -> ``cls_head.fc_cls.*``), strictly:
  only the known differences of published checkpoints pass on their own.
* :func:`convert_official_state_dict` maps official key names to the names of
  an mmstop recognizer (``backbone.*`` + ``cls_head.fc_cls.*``); it backs
  ``tools/model_converters/ssp_official_to_mmstop.py``.

Files are read with the safe loader of :mod:`mmstop.utils.checkpoint`.
"""
import math
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor, nn

from mmstop.utils.checkpoint import CheckpointMismatchError, read_checkpoint

WRAPPER_KEYS = ('model', 'module', 'state_dict')
STRIP_PREFIXES = ('backbone.', 'encoder.')
SSP_OFFICIAL_PREFIXES = ('inner_prompt.', 'dynamic_scales.',
                         'prompt_attentions.')

_MIXER_LEAF = (r'in_proj\.weight|out_proj\.weight|A_log|A_b_log|D|D_b|'
               r'conv1d(_b)?\.(weight|bias)|x_proj(_b)?\.weight|'
               r'dt_proj(_b)?\.(weight|bias)')
OFFICIAL_BACKBONE_KEY = re.compile(
    r'^(cls_token|pos_embed|temporal_pos_embedding|norm_f\.weight|'
    r'patch_embed\.proj\.(weight|bias)|'
    r'layers\.\d+\.(norm\.weight|mixer\.(' + _MIXER_LEAF + r')))$')
OFFICIAL_SSP_KEY = re.compile(
    r'^(inner_prompt\.(fc1|fc2|conv|inter\.convs|inter\.heads)\.'
    r'(weight|bias)|dynamic_scales\.\d+|prompt_attentions\.\d+\.(scale|'
    r'(down_proj|up_proj)\.(weight|bias)|attention\.(in_proj_weight|'
    r'in_proj_bias|out_proj\.weight|out_proj\.bias)))$')
OFFICIAL_HEAD_KEY = re.compile(r'^head\.(weight|bias)$')
MMSTOP_HEAD_PREFIX = 'cls_head.fc_cls.'
#: Extra modules of published checkpoints that no mmstop model has (the
#: self-distilled image models' ``distill_head``): skipped with a log line.
KNOWN_EXTRA_PREFIXES = ('distill_head.', )


# --------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------
def load_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """Read a checkpoint file (local path, ``unsafe://path`` or any
    mmengine-supported URL) with the safe loader.

    Raises:
        FileNotFoundError: A local ``filename`` does not exist.
    """
    try:
        return read_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'VideoMamba checkpoint file not found: {filename!r}') from None


def unwrap_state_dict(checkpoint, source: str = '<checkpoint>'
                      ) -> 'OrderedDict[str, Tensor]':
    """Take the state dict out of a ``model`` / ``module`` / ``state_dict``
    wrapper (in that order, like the official loader) or use the dict itself.

    Raises:
        TypeError: The result is not a mapping of names to tensors.
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{source}: expected a dict (state dict or a '
                        f"checkpoint with one of {WRAPPER_KEYS}), got "
                        f'{type(checkpoint).__name__}')
    sd = checkpoint
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), dict):
            sd = checkpoint[key]
            break
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f'{source}: not a state dict, the values of {bad[:5]} '
                        f'are not tensors (known wrappers: {WRAPPER_KEYS})')
    return OrderedDict(sd)


def strip_prefixes(state_dict: Dict[str, Tensor],
                   prefixes: Sequence[str] = STRIP_PREFIXES
                   ) -> 'OrderedDict[str, Tensor]':
    """Remove one leading prefix of ``prefixes`` from every key."""
    out = OrderedDict()
    for k, v in state_dict.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


# --------------------------------------------------------------------------
# tensor adaptations (official loader rules)
# --------------------------------------------------------------------------
def inflate_patch_kernel(weight_2d: Tensor, time_dim: int) -> Tensor:
    """(C, 3, kh, kw) image kernel -> (C, 3, time_dim, kh, kw) with the kernel
    at temporal index ``time_dim // 2`` and zeros elsewhere ("center"
    inflation; ``unsqueeze(2)`` for ``time_dim = 1``)."""
    out = weight_2d.new_zeros(weight_2d.shape[:2] + (time_dim, ) +
                              weight_2d.shape[2:])
    out[:, :, time_dim // 2] = weight_2d
    return out


def resize_pos_embed(pos_embed: Tensor, grid_size: Tuple[int, int]) -> Tensor:
    """Resize a (1, 1 + g*g, C) spatial embedding to the (h, w) grid.

    The CLS slot is kept; the g x g grid (row-major) is resized bicubically
    with ``align_corners=False``.
    """
    n = pos_embed.shape[1] - 1
    g = int(round(math.sqrt(n)))
    if g * g != n:
        raise ValueError(f'pos_embed with {n} grid tokens is not a square '
                         f'grid; cannot resize it to {grid_size}')
    c = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].float().reshape(1, g, g, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(grid_size), mode='bicubic',
                         align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, c)
    return torch.cat([pos_embed[:, :1].float(), grid], dim=1)


def resize_temporal_pos_embed(temporal: Tensor, length: int) -> Tensor:
    """Resize a (1, T, C) temporal embedding to ``length`` (linear,
    ``align_corners=False``; an identity when T == length)."""
    x = temporal.float().permute(0, 2, 1)
    x = F.interpolate(x, size=(length, ), mode='linear', align_corners=False)
    return x.permute(0, 2, 1)


def _shape_hint(name: str) -> str:
    if name.startswith('ssp.inner_prompt.inter.convs'):
        return (' (the SSP frame-summary kernel covers the whole patch grid: '
                'build the model with the img_size the checkpoint was '
                'trained at)')
    if name.startswith('patch_embed.proj.weight'):
        return ' (patch_size / tubelet_size differ)'
    if name.startswith(('layers.', 'norm_f', 'cls_token', 'patch_embed')):
        return ' (a checkpoint of another arch?)'
    return ''


def adapt_videomamba_state_dict(module: nn.Module, state_dict: dict,
                                prefix: str, local_metadata, strict,
                                missing_keys, unexpected_keys,
                                error_msgs) -> None:
    """State-dict pre-hook of VideoMamba (see the module doc).

    Modifies ``state_dict`` (torch passes a copy of the caller's dict) for
    the keys under ``prefix``.

    Raises:
        ValueError: A tensor's shape differs from the model's and no rule
            adapts it; the message names the key and both shapes.
    """
    # Official SSP names -> ssp.*
    if getattr(module, 'ssp', None) is not None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if rest.startswith(SSP_OFFICIAL_PREFIXES):
                new = prefix + 'ssp.' + rest
                if new not in state_dict:
                    state_dict[new] = state_dict.pop(key)
    for name, param in module.named_parameters():
        key = prefix + name
        value = state_dict.get(key)
        if not isinstance(value, Tensor):
            continue
        if tuple(value.shape) == tuple(param.shape):
            continue
        new = None
        if (name == 'patch_embed.proj.weight' and value.dim() == 4
                and param.dim() == 5 and tuple(value.shape) == tuple(
                    param.shape[:2] + param.shape[3:])):
            new = inflate_patch_kernel(value, param.shape[2])
            what = 'inflated the 2-D patch kernel'
        elif (name == 'pos_embed' and value.dim() == 3
              and value.shape[0] == 1 and value.shape[-1] == param.shape[-1]):
            new = resize_pos_embed(value, module.grid_size)
            what = 'resized pos_embed (bicubic)'
        elif (name == 'temporal_pos_embedding' and value.dim() == 3
              and value.shape[0] == 1 and value.shape[-1] == param.shape[-1]):
            new = resize_temporal_pos_embed(value, param.shape[1])
            what = 'resized temporal_pos_embedding (linear)'
        if new is None or tuple(new.shape) != tuple(param.shape):
            raise ValueError(
                f'VideoMamba checkpoint tensor {key!r} has shape '
                f'{tuple(value.shape)}, the model expects '
                f'{tuple(param.shape)}{_shape_hint(name)}')
        print_log(
            f'VideoMamba: {what}: {key} {tuple(value.shape)} -> '
            f'{tuple(new.shape)}',
            logger='current')
        state_dict[key] = new.to(value.dtype)


# --------------------------------------------------------------------------
# official names -> mmstop recognizer names
# --------------------------------------------------------------------------
def classify_official_key(key: str) -> Optional[str]:
    """``'backbone'``, ``'ssp'``, ``'head'`` or None for an official key."""
    if OFFICIAL_BACKBONE_KEY.match(key):
        return 'backbone'
    if OFFICIAL_SSP_KEY.match(key):
        return 'ssp'
    if OFFICIAL_HEAD_KEY.match(key):
        return 'head'
    return None


def convert_official_state_dict(
        state_dict: Dict[str, Tensor],
        ignore_prefixes: Iterable[str] = (),
        backbone_prefix: str = 'backbone.',
        head_prefix: str = MMSTOP_HEAD_PREFIX) -> 'OrderedDict[str, Tensor]':
    """Official VideoMamba / SSP state dict -> mmstop recognizer state dict.

    ``cls_token``, ``pos_embed``, ``layers.*`` ... -> ``backbone.<key>``;
    ``inner_prompt.*``, ``prompt_attentions.*``, ``dynamic_scales.*`` ->
    ``backbone.ssp.<key>``; ``head.*`` -> ``cls_head.fc_cls.*``. Leading
    ``backbone.`` / ``encoder.`` prefixes of the input are removed first.
    Tensors are kept as they are (a 2-D image patch kernel is inflated when
    the result is loaded).

    Args:
        state_dict (dict): Official state dict (already unwrapped).
        ignore_prefixes (Iterable[str]): Drop keys starting with these
            (e.g. ``'distill_head.'``). Defaults to ().
        backbone_prefix (str): Prefix of the backbone. Defaults to
            ``'backbone.'``.
        head_prefix (str): Prefix of the classifier. Defaults to
            ``'cls_head.fc_cls.'``.

    Raises:
        KeyError: Keys that are neither official VideoMamba nor SSP keys.
    """
    ignore_prefixes = tuple(ignore_prefixes)
    out, unknown = OrderedDict(), []
    for key, value in strip_prefixes(state_dict).items():
        if ignore_prefixes and key.startswith(ignore_prefixes):
            continue
        kind = classify_official_key(key)
        if kind == 'backbone':
            out[backbone_prefix + key] = value
        elif kind == 'ssp':
            out[backbone_prefix + 'ssp.' + key] = value
        elif kind == 'head':
            out[head_prefix + key[len('head.'):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f'{len(unknown)} of {len(state_dict)} key(s) are not official '
            f'VideoMamba / SSP keys ({len(out)} recognised): '
            f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}; drop them '
            f'with ignore_prefixes (--ignore-prefix) if they are expected')
    return out


# --------------------------------------------------------------------------
# loading a file into a backbone or a recognizer
# --------------------------------------------------------------------------
def _split_target(model: nn.Module):
    """Return (backbone, fc_cls or None) for a VideoMamba or a recognizer."""
    from .videomamba import VideoMamba
    if isinstance(model, VideoMamba):
        return model, None
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, VideoMamba):
        raise TypeError('load_videomamba_checkpoint expects a VideoMamba '
                        'backbone or a recognizer whose .backbone is one, got '
                        f'{type(model).__name__}')
    head = getattr(model, 'cls_head', None)
    fc = getattr(head, 'fc_cls', None)
    return backbone, fc if isinstance(fc, nn.Linear) else None


def load_videomamba_checkpoint(model: nn.Module,
                               filename: str,
                               map_location='cpu',
                               logger='current',
                               allow_mismatch: Sequence[str] = ()
                               ) -> Dict[str, List[str]]:
    r"""Load a published VideoMamba or an official SSP checkpoint, strictly.

    The file may hold a bare state dict or wrap it in ``model`` / ``module``
    / ``state_dict``; ``backbone.`` / ``encoder.`` prefixes are removed.
    Backbone tensors go through :func:`adapt_videomamba_state_dict`
    (inflation, position-embedding resizing, clear shape errors). The
    differences published checkpoints always have pass and are logged:

    * every SSP tensor missing (a plain VideoMamba checkpoint: SSP trains
      from scratch);
    * ``temporal_pos_embedding`` missing (image checkpoints: it keeps its
      zero init, as in the official code);
    * ``distill_head.*`` (self-distilled image models) in the file;
    * a classifier (``head.*`` / ``cls_head.fc_cls.*``) in the file when
      ``model`` is a backbone, which owns no classifier.

    Any other missing or unexpected key, some but not all SSP tensors, and a
    classifier whose shape differs from the recognizer's raise
    :class:`~mmstop.utils.checkpoint.CheckpointMismatchError` naming every
    such key, unless it matches ``allow_mismatch`` (e.g.
    ``[r'cls_head\.']`` for a recognizer with a new class count); allowed
    keys keep their current values.

    Args:
        model (nn.Module): A :class:`VideoMamba` or a recognizer with one as
            ``.backbone`` and a linear ``.cls_head.fc_cls``.
        filename (str): Checkpoint path (``unsafe://path`` for full
            unpickling of a trusted file, or an mmengine-supported URL).
        map_location: Passed to the loader. Defaults to ``'cpu'``.
        logger: mmengine ``print_log`` logger. Defaults to ``'current'``.
        allow_mismatch (Sequence[str]): Regular expressions (``re.match``)
            of keys that may be missing, unexpected or mis-shaped: backbone
            names (``layers.0.norm.weight``), checkpoint names after prefix
            removal (``extra.weight``) or ``cls_head.fc_cls.*``.
            Defaults to ().

    Returns:
        dict: ``missing`` (backbone keys not in the file), ``skipped``
        (checkpoint keys not loaded) and ``loaded_head`` (head keys loaded).

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        ValueError: A backbone tensor has an unadaptable shape.
        CheckpointMismatchError: Keys differ beyond the known differences
            and ``allow_mismatch``.
    """
    backbone, fc = _split_target(model)
    patterns = [re.compile(p) for p in ([allow_mismatch] if isinstance(
        allow_mismatch, str) else allow_mismatch)]

    def allowed(key):
        return any(p.match(key) for p in patterns)

    sd = strip_prefixes(
        unwrap_state_dict(
            load_checkpoint_file(filename, map_location), source=filename))
    own = set(backbone.state_dict().keys())
    has_ssp = backbone.ssp is not None
    backbone_sd, head_sd, skipped, known = (OrderedDict(), OrderedDict(), [],
                                            [])
    for key, value in sd.items():
        if OFFICIAL_HEAD_KEY.match(key):
            head_sd[key[len('head.'):]] = value
        elif key.startswith(MMSTOP_HEAD_PREFIX):
            head_sd[key[len(MMSTOP_HEAD_PREFIX):]] = value
        elif key in own or (has_ssp and key.startswith(SSP_OFFICIAL_PREFIXES)
                            and 'ssp.' + key in own):
            backbone_sd[key] = value
        elif key.startswith(KNOWN_EXTRA_PREFIXES):
            known.append(key)
        else:
            skipped.append(key)
    unexpected = [k for k in skipped if not allowed(k)]
    skipped += known
    if known:
        print_log(
            f'VideoMamba: {len(known)} key(s) of {filename} belong to modules '
            f'mmstop models do not have and were skipped: {known[:10]}'
            f'{" ..." if len(known) > 10 else ""}',
            logger=logger)

    result = backbone.load_state_dict(backbone_sd, strict=False)
    missing = list(result.missing_keys)
    ssp_missing = [k for k in missing if k.startswith('ssp.')]
    ssp_total = sum(k.startswith('ssp.') for k in own)
    other_missing = [k for k in missing if not k.startswith('ssp.')]
    bad_missing = [
        k for k in other_missing
        if k != 'temporal_pos_embedding' and not allowed(k)
    ]
    if ssp_missing and len(ssp_missing) < ssp_total:
        bad_missing += [k for k in ssp_missing if not allowed(k)]
    elif ssp_missing:
        print_log(
            f'VideoMamba: the {len(ssp_missing)} SSP tensor(s) are not in '
            f'{filename} and keep their init (trained from scratch)',
            logger=logger)
    if 'temporal_pos_embedding' in other_missing:
        print_log(
            f'VideoMamba: {filename} has no temporal_pos_embedding (an image '
            'checkpoint): it keeps its zero init', logger=logger)

    loaded_head, bad_head = [], []
    if head_sd:
        if fc is None:
            print_log(
                f'VideoMamba: classifier {sorted(head_sd)} of {filename} not '
                'loaded: the backbone has no head (the recognizer\'s cls_head '
                'owns the classifier)',
                logger=logger)
            skipped += ['head.' + k for k in head_sd]
        else:
            ours = {k: v for k, v in fc.state_dict().items()}
            same = (set(head_sd) == set(ours) and all(
                tuple(head_sd[k].shape) == tuple(ours[k].shape)
                for k in ours))
            if same:
                fc.load_state_dict(head_sd)
                loaded_head = [MMSTOP_HEAD_PREFIX + k for k in head_sd]
                print_log(f'VideoMamba: loaded the classifier of {filename} '
                          'into cls_head.fc_cls', logger=logger)
            else:
                for k in sorted(set(head_sd) | set(ours)):
                    name = MMSTOP_HEAD_PREFIX + k
                    if allowed(name):
                        continue
                    shapes = [
                        tuple(t.shape) if t is not None else 'absent'
                        for t in (head_sd.get(k), ours.get(k))
                    ]
                    bad_head.append(f'{name}: checkpoint {shapes[0]}, '
                                    f'model {shapes[1]}')
                if not bad_head:
                    print_log(
                        f'VideoMamba: classifier of {filename} skipped '
                        '(allowed by allow_mismatch): cls_head.fc_cls keeps '
                        'its init', logger=logger, level=30)
                skipped += ['head.' + k for k in head_sd]
    if unexpected or bad_missing or bad_head:
        lines = [f'VideoMamba checkpoint {filename} does not match the '
                 'model:']
        if bad_missing:
            lines.append(f'  {len(bad_missing)} missing key(s): '
                         f'{", ".join(bad_missing)}')
        if unexpected:
            lines.append(f'  {len(unexpected)} unexpected key(s): '
                         f'{", ".join(unexpected)}')
        if bad_head:
            lines.append(f'  mis-shaped classifier: {"; ".join(bad_head)} '
                         '(a different class count)')
        lines.append(
            'Loading stops here instead of leaving these tensors at their '
            'initial values: fix the config or the checkpoint, or list the '
            'keys you expect to differ in allow_mismatch (regular '
            "expressions; for pretrained=..., use init_cfg=dict("
            "type='Pretrained', checkpoint=..., allow_mismatch=[...]))")
        raise CheckpointMismatchError('\n'.join(lines))
    tolerated = [k for k in skipped + missing if allowed(k)]
    if tolerated:
        print_log(
            f'VideoMamba: key(s) of {filename} allowed by allow_mismatch and '
            f'skipped: {tolerated}', logger=logger, level=30)
    return dict(missing=missing, skipped=skipped, loaded_head=loaded_head)
