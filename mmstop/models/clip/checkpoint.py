# Copyright (c) mmstop contributors. All rights reserved.
"""Read CLIP checkpoints in the published formats.

Supported files:

* OpenAI's TorchScript archives (``ViT-B-32.pt`` as downloaded by the
  ``clip`` package): loaded with ``torch.jit.load`` on CPU, never executed.
* Plain state dicts (``torch.save(model.state_dict())``, open_clip's
  ``open_clip_pytorch_model.bin``) and checkpoints wrapping one in
  ``state_dict`` or ``model``, with an optional ``module.`` prefix. They
  are read with :func:`mmstop.utils.checkpoint.safe_torch_load` (no code in
  the file can run; ``unsafe://path`` asks for full unpickling).
"""
import os.path as osp
import zipfile
from typing import Dict

import torch
import torch.nn as nn

from mmstop.utils.checkpoint import (UnsafeCheckpointError, safe_torch_load,
                                     split_unsafe_prefix)

#: Entries of OpenAI archives that are not parameters.
_NON_PARAMETER_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(
            n.endswith('constants.pkl') or '/code/' in n for n in zf.namelist())


def read_clip_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a CLIP state dict (OpenAI parameter names) from ``path``.

    Args:
        path (str): A TorchScript archive or a (wrapped) state dict file;
            ``unsafe://path`` unpickles a state dict file fully.

    Returns:
        dict[str, torch.Tensor]: The CLIP parameters on CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be read as a CLIP checkpoint.
        UnsafeCheckpointError: Unpickling the file would need globals
            outside the safe loader's allow-list (prefix the path with
            ``unsafe://`` to trust it).
    """
    path, unsafe = split_unsafe_prefix(str(path))
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'CLIP checkpoint not found: {path} (set the pretrained CLIP path '
            'in the config, e.g. model.backbone.pretrained)')
    try:
        if _is_torchscript(path):
            state = torch.jit.load(path, map_location='cpu').state_dict()
        else:
            state = safe_torch_load(path, unsafe=unsafe)
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # corrupt or foreign file
        raise ValueError(
            f'cannot read CLIP checkpoint {path}: {type(e).__name__}: {e}') from e
    for wrapper in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f'CLIP checkpoint {path} holds a {type(state).__name__}, '
                         'not a state dict')
    out = {}
    for key, value in state.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key in _NON_PARAMETER_KEYS or not torch.is_tensor(value):
            continue
        out[key] = value
    return out


def load_clip_state_dict(model: nn.Module, state: Dict[str, torch.Tensor],
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
            f'missing keys {missing[:10]}{" ..." if len(missing) > 10 else ""}, '
            f'unexpected keys {unexpected[:10]}'
            f'{" ..." if len(unexpected) > 10 else ""}')
    for key, target in own.items():
        value = state[key]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f'CLIP checkpoint {source}: shape mismatch for {key}: expected '
                f'{tuple(target.shape)} (model arch), got {tuple(value.shape)}')
    with torch.no_grad():
        for key, target in own.items():
            target.copy_(state[key].to(target.dtype))
