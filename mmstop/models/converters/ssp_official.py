# Copyright (c) mmstop contributors. All rights reserved.
"""Official SSP / VideoMamba checkpoint -> mmstop recognizer state dict.

The official code (zhoujiahuan1991/NeurIPS2025-SSP, vendoring
OpenGVLab/VideoMamba's ``VisionMamba``) saves the model's state dict, bare or
under ``model`` / ``module`` / ``state_dict``, sometimes with a ``backbone.``
or ``encoder.`` prefix (``docs/ssp.md#checkpoints``). Its names map to an
mmstop recognizer with a :class:`~mmstop.models.backbones.VideoMamba`
backbone and a linear head with ``fc_cls``::

    cls_token, pos_embed, layers.*, norm_f.* ...  -> backbone.<key>
    inner_prompt.*, prompt_attentions.*, dynamic_scales.*
                                                 -> backbone.ssp.<key>
    head.weight / head.bias                -> cls_head.fc_cls.weight / bias

The same names load into a bare ``VideoMamba``, whose state-dict pre-hook
accepts the official SSP names (:data:`SSP_OFFICIAL_PREFIXES`).
"""
import re
from collections import OrderedDict
from typing import Dict, Iterable, Optional

from torch import Tensor

from mmstop.utils.checkpoint import unwrap_state_dict

#: Wrappers of official / published checkpoints, in the official loader's
#: order of preference.
SSP_WRAPPERS = ('model', 'module', 'state_dict')
#: Key prefixes of published checkpoints removed before mapping.
SSP_STRIP_PREFIXES = ('backbone.', 'encoder.')
#: Official names of the SSP modules (mmstop: ``ssp.<name>``).
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
#: Where an mmstop recognizer keeps the classifier.
MMSTOP_HEAD_PREFIX = 'cls_head.fc_cls.'


def classify_official_key(key: str) -> Optional[str]:
    """What an official key belongs to.

    Args:
        key (str): Official name (wrapper prefixes removed).

    Returns:
        str | None: ``'backbone'``, ``'ssp'``, ``'head'``, or None for a key
        of neither.
    """
    if OFFICIAL_BACKBONE_KEY.match(key):
        return 'backbone'
    if OFFICIAL_SSP_KEY.match(key):
        return 'ssp'
    if OFFICIAL_HEAD_KEY.match(key):
        return 'head'
    return None


def unwrap_official_ssp(checkpoint,
                        source: str = 'checkpoint'
                        ) -> 'OrderedDict[str, Tensor]':
    """The state dict of an official / published checkpoint: the
    :data:`SSP_WRAPPERS` entry (or the dict itself) with
    :data:`SSP_STRIP_PREFIXES` removed.

    Args:
        checkpoint (dict): What the file holds.
        source (str): The file, for messages. Defaults to
            ``'checkpoint'``.

    Returns:
        OrderedDict[str, Tensor]: The state dict.

    Raises:
        CheckpointError: Not a dict, or a value is not a tensor.
    """
    return unwrap_state_dict(
        checkpoint,
        source=source,
        wrappers=SSP_WRAPPERS,
        prefixes=SSP_STRIP_PREFIXES,
        tensors_only=True)


def convert_official_ssp(checkpoint: Dict,
                         ignore_prefixes: Iterable[str] = (),
                         backbone_prefix: str = 'backbone.',
                         head_prefix: str = MMSTOP_HEAD_PREFIX,
                         source: str = 'checkpoint'
                         ) -> 'OrderedDict[str, Tensor]':
    """Map an official VideoMamba / SSP checkpoint to recognizer keys.

    Tensors are kept as they are (a 2-D image patch kernel or position
    embeddings of another size are adapted when the result is loaded).

    Args:
        checkpoint (dict): Official state dict, bare or wrapped
            (:func:`unwrap_official_ssp`).
        ignore_prefixes (Iterable[str]): Drop keys starting with these
            (e.g. ``'distill_head.'``). Defaults to ().
        backbone_prefix (str): Prefix of the backbone. Defaults to
            ``'backbone.'``.
        head_prefix (str): Prefix of the classifier. Defaults to
            ``'cls_head.fc_cls.'``.
        source (str): The file, for messages. Defaults to
            ``'checkpoint'``.

    Returns:
        OrderedDict[str, Tensor]: mmstop state dict.

    Raises:
        KeyError: Keys that are neither official VideoMamba nor SSP keys.
        CheckpointError: ``checkpoint`` holds no state dict.
    """
    state_dict = unwrap_official_ssp(checkpoint, source)
    ignore_prefixes = tuple(ignore_prefixes)
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
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
