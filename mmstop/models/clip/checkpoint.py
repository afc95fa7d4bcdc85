# Copyright (c) mmstop contributors. All rights reserved.
"""Read CLIP checkpoints in the published formats.

Supported files, all read with
:func:`mmstop.utils.checkpoint.safe_torch_load` (no code in the file can
run; ``unsafe://path`` asks for full unpickling):

* OpenAI's TorchScript archives (``ViT-B-32.pt`` as downloaded by the
  ``clip`` package): their tensors are read without loading the archive as
  a module (:func:`~mmstop.utils.checkpoint.read_torchscript_state_dict`;
  ``torch.jit.load``, which open_clip's ``load_openai_model`` uses, runs
  code of the archive).
* Plain state dicts (``torch.save(model.state_dict())``, open_clip's
  ``open_clip_pytorch_model.bin``) and checkpoints wrapping one in
  ``state_dict``, ``model`` or ``module``, with an optional ``module.``
  prefix (:func:`~mmstop.utils.checkpoint.unwrap_state_dict`).
"""
import os.path as osp
from typing import Dict

import torch
import torch.nn as nn

from mmstop.utils.checkpoint import (UnsafeCheckpointError, safe_torch_load,
                                     split_unsafe_prefix, unwrap_state_dict)

#: Entries of OpenAI archives that are not parameters.
_NON_PARAMETER_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def read_clip_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a CLIP state dict (OpenAI parameter names) from ``path``.

    Args:
        path (str): A TorchScript archive or a (wrapped) state dict file;
            ``unsafe://path`` unpickles a state dict file fully (and loads
            an archive with ``torch.jit.load``).

    Returns:
        dict[str, torch.Tensor]: The CLIP parameters on CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be read as a checkpoint.
        UnsafeCheckpointError: Reading the file would need globals outside
            the safe loader's allow-list (prefix the path with
            ``unsafe://`` to trust it).
        CheckpointError: The file holds no state dict.
    """
    path, unsafe = split_unsafe_prefix(str(path))
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'CLIP checkpoint not found: {path} (set the pretrained CLIP path '
            'in the config, e.g. model.backbone.pretrained)')
    try:
        checkpoint = safe_torch_load(path, unsafe=unsafe)
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f'cannot read CLIP checkpoint {path}: '
                         f'{type(e).__name__}: {e}') from e
    state = unwrap_state_dict(checkpoint, source=f'CLIP checkpoint {path}')
    return {
        key: value
        for key, value in state.items()
        if key not in _NON_PARAMETER_KEYS and torch.is_tensor(value)
    }


def load_clip_state_dict(model: nn.Module,
                         state: Dict[str, torch.Tensor],
                         source: str = 'checkpoint') -> None:
    """Copy CLIP weights into an open_clip ``CLIP`` with strict checks.

    Every parameter of ``model`` must be present with the same shape; values
    are cast to the model's dtype (OpenAI archives store fp16). Extra keys in
    the checkpoint are an error too, so a checkpoint of another architecture
    never loads silently.

    Args:
        model (nn.Module): The open_clip CLIP model.
        state (dict): CLIP state dict with OpenAI parameter names.
        source (str): Name of the file, for error messages.
    """
    own = model.state_dict()
    # non-persistent buffers (e.g. open_clip's causal ``attn_mask``) are
    # rebuilt by the model; archives traced from it may still carry them
    buffers = {name for name, _ in model.named_buffers()}
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own and k not in buffers)
    if missing or unexpected:
        raise KeyError(
            f'CLIP checkpoint {source} does not match the model architecture: '
            f'missing keys {missing[:10]}'
            f'{" ..." if len(missing) > 10 else ""}, '
            f'unexpected keys {unexpected[:10]}'
            f'{" ..." if len(unexpected) > 10 else ""}')
    for key, target in own.items():
        value = state[key]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f'CLIP checkpoint {source}: shape mismatch for {key}: '
                f'expected {tuple(target.shape)} (model arch), got '
                f'{tuple(value.shape)}')
    with torch.no_grad():
        for key, target in own.items():
            target.copy_(state[key].to(target.dtype))
