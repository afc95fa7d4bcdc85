# Copyright (c) mmstop contributors. All rights reserved.
"""The shipped configs' models in tests of the tools that take a config and
a checkpoint (``tools/infer.py``, ``tools/visualize_prompts.py``, MMAction2's
tools, the FLOP counters)."""
import os.path as osp

import torch
from mmengine.config import Config

from . import REPO_ROOT, build_model


def config_path(name: str) -> str:
    """``configs/<name>`` of the repository (absolute)."""
    return osp.join(REPO_ROOT, 'configs', name)


def config_model(config: str, seed: int = 0, **head):
    """The model of ``config`` (a path, or a name under ``configs/``) with
    random weights (``seed``), ``head`` set on ``model.cls_head`` and the
    training-only batch augmentations (Mixup/CutMix) left out."""
    path = config if osp.isabs(config) else config_path(config)
    model = Config.fromfile(path).model
    model.get('data_preprocessor', {}).pop('blending', None)
    if head:
        model.cls_head.update(head)
    return build_model(model, seed)


def save_checkpoint(model, path, meta=None) -> str:
    """``model``'s weights as an MMEngine-style checkpoint at ``path``."""
    torch.save(dict(meta=meta or {}, state_dict=model.state_dict()), path)
    return str(path)


def small_ssp_config(directory, depth: int) -> str:
    """A config file in ``directory``: the SSP demo recipe
    (``configs/ssp_videomamba_demo.py``) on a VideoMamba of width 64 and
    ``depth`` blocks (the tiny one has 24, slow to trace)."""
    path = osp.join(str(directory), f'ssp_small_{depth}.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = [{config_path('ssp_videomamba_demo.py')!r}]\n"
                'model = dict(backbone=dict(arch=dict(_delete_=True, '
                f'embed_dims=64, depth={depth})), '
                'cls_head=dict(in_channels=64))\n')
    return path
