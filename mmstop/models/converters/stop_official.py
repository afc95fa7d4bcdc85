# Copyright (c) mmstop contributors. All rights reserved.
"""Official STOP / DGL checkpoint -> mmstop ``STOPCLIP`` state dict.

The official code (zhoujiahuan1991/CVPR2025-STOP @ 7253928) saves the
``CLIP4Clip`` state dict (``ckpt.pth.tar``: ``{'state_dict': ...}`` with keys
``module.clip.<key>`` under DDP, ``clip.<key>`` otherwise). Its ``<key>``
names map as follows; CLIP's own parameters keep their OpenAI names under
``clip.`` (``docs/stop.md#provenance``).
"""
import re
from typing import Dict, List, Tuple

import torch

from mmstop.utils.checkpoint import unwrap_state_dict

# (official regex, mmstop replacement), first match wins
_RULES: List[Tuple[str, str]] = [
    (r'^visual\.TemporalPrompt\.Conv\.(\d+)\.', r'intra_prompt.generator.\1.'),
    (r'^visual\.TemporalPrompt\.MLP\.(\d+)\.', r'intra_prompt.mlp.\1.'),
    (r'^visual\.TemporalPrompt\.Cal_Net\.', 'intra_prompt.region_scorer.'),
    (r'^visual\.TemporalPrompt\.Attention\.', 'inter_prompt.attention.'),
    (r'^visual\.TemporalPrompt\.InterConv\.(\d+)\.', r'inter_prompt.conv.\1.'),
    (r'^visual\.TemporalPrompt\.InterMLP\.(\d+)\.', r'inter_prompt.mlp.\1.'),
    (r'^visual\.TemporalPrompt\.Cal_Net_Inter\.',
     'inter_prompt.variation_scorer.'),
    (r'^visual\.prompt_embeddings$', 'global_prompts'),
    (r'^visual\.transformer\.resblocks\.(\d+)\.LoRA\.0\.',
     r'visual_adapters.\1.down.'),
    (r'^visual\.transformer\.resblocks\.(\d+)\.LoRA\.1\.',
     r'visual_adapters.\1.act.'),
    (r'^visual\.transformer\.resblocks\.(\d+)\.LoRA\.2\.',
     r'visual_adapters.\1.up.'),
    (r'^transformer\.resblocks\.(\d+)\.LoRA\.0\.', r'text_adapters.\1.down.'),
    (r'^transformer\.resblocks\.(\d+)\.LoRA\.1\.', r'text_adapters.\1.act.'),
    (r'^transformer\.resblocks\.(\d+)\.LoRA\.2\.', r'text_adapters.\1.up.'),
    (r'^unified_prompt_embedding\.weight$',
     'prompt_generator.embedding.weight'),
    (r'^PromptTransformer\.resblocks\.0\.', 'prompt_generator.transformer.'),
    (r'^unified_prompt_mlp\.', 'prompt_generator.text_mlp.'),
    (r'^visual_prompt_embedding$', 'prompt_generator.embedding'),
    (r'^prefix_text_prompt_proj_layer\.', 'prompt_generator.prefix_proj.'),
    (r'^postfix_text_prompt_proj_layer\.', 'prompt_generator.postfix_proj.'),
]
_CLIP_KEY = re.compile(
    r'^(visual\.(conv1\.weight|class_embedding|positional_embedding|ln_pre\.|'
    r'ln_post\.|proj$|transformer\.resblocks\.\d+\.(attn|ln_1|ln_2|mlp)\.)|'
    r'transformer\.resblocks\.\d+\.(attn|ln_1|ln_2|mlp)\.|token_embedding\.|'
    r'positional_embedding$|text_projection$|logit_scale$|ln_final\.)')
#: Official buffers / bookkeeping entries that are not parameters.
_DROPPED = ('visual.position_ids', 'input_resolution', 'context_length',
            'vocab_size')


def convert_official_stop(checkpoint: dict,
                          prefix: str = '',
                          source: str = 'checkpoint'
                          ) -> Dict[str, torch.Tensor]:
    """Map an official STOP state dict (or checkpoint) to ``STOPCLIP`` keys.

    Args:
        checkpoint (dict): Official parameters with or without the
            ``state_dict`` wrapper and ``module.`` / ``clip.`` prefixes
            (:func:`~mmstop.utils.checkpoint.unwrap_state_dict`).
        prefix (str): Prepended to every output key, e.g. ``'backbone.'`` to
            load into a recognizer or similarity model. Defaults to ``''``.
        source (str): The file, for messages. Defaults to
            ``'checkpoint'``.

    Returns:
        dict[str, torch.Tensor]: mmstop state dict.

    Raises:
        KeyError: A key is neither a CLIP nor a STOP/DGL parameter.
        CheckpointError: ``checkpoint`` is not a dict.
    """
    state = unwrap_state_dict(
        checkpoint, source=source, prefixes=('module.', 'clip.'))
    out = {}
    unknown = []
    for name, value in state.items():
        if name in _DROPPED:
            continue
        for pattern, repl in _RULES:
            new, n = re.subn(pattern, repl, name)
            if n:
                out[prefix + new] = value
                break
        else:
            if _CLIP_KEY.match(name):
                out[prefix + 'clip.' + name] = value
            else:
                unknown.append(name)
    if unknown:
        raise KeyError(
            f'{len(unknown)} of {len(state)} key(s) are not official '
            f'STOP/CLIP parameters ({len(out)} recognised): {unknown[:10]}'
            f'{" ..." if len(unknown) > 10 else ""}')
    return out
