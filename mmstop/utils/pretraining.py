# Copyright (c) mmstop contributors. All rights reserved.
"""Small helpers shared by the pretraining scripts of ``tools/pretrain/``."""
import hashlib
import json
import math
import os.path as osp
import platform
from typing import Dict, List, Tuple

import numpy as np
import torch


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int,
                     peak_lr: float) -> float:
    """Linear warm-up from ``peak_lr / warmup_steps`` to ``peak_lr``, then a
    cosine to 0 at ``total_steps``.

    Args:
        step (int): Current step, from 0.
        total_steps (int): Steps in all.
        warmup_steps (int): Warm-up steps.
        peak_lr (float): Learning rate after the warm-up.

    Returns:
        float: The learning rate of ``step``.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.)))


def to_normalised_tensor(images: np.ndarray, mean: Tuple[float, ...],
                         std: Tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` RGB -> float ``[..., 3, H, W]`` normalised
    with ``mean`` / ``std`` on 0-255 pixels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.movedim(-1, -3).contiguous()


def split_decay(named_params, no_decay) -> List[Dict]:
    """Two optimizer parameter groups of the trainable parameters: those
    for which ``no_decay(name, param)`` is true with weight decay 0, the
    others with the optimizer's default weight decay."""
    decay, other = [], []
    for name, param in named_params:
        if not param.requires_grad:
            continue
        (other if no_decay(name, param) else decay).append(param)
    return [dict(params=decay), dict(params=other, weight_decay=0.)]


def provenance(checkpoint: str, script: str, argv: List[str],
               **fields) -> Dict:
    """The provenance record of a checkpoint a pretraining script wrote.

    Args:
        checkpoint (str): The checkpoint file (already written).
        script (str): The script, as run from the repository root (e.g.
            ``'tools/pretrain/tiny_clip.py'``).
        argv (list[str]): Its command-line arguments.
        **fields: Everything else to record (arguments, data, metrics).

    Returns:
        dict: ``checkpoint`` (file name), ``sha256``, ``bytes``,
        ``command``, then ``fields``, then the Python, torch and numpy
        versions.
    """
    return dict(
        checkpoint=osp.basename(checkpoint),
        sha256=sha256_file(checkpoint),
        bytes=osp.getsize(checkpoint),
        command=' '.join(['python', script] + list(argv)),
        **fields,
        versions=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            numpy=np.__version__))


def write_json(path: str, obj: Dict) -> None:
    """Write ``obj`` as indented JSON with a final newline."""
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)
        f.write('\n')
