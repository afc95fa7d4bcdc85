# Copyright (c) mmstop contributors. All rights reserved.
"""One training step of a shipped config's model under autocast, shared by
tests/models/test_autocast.py (CPU) and tests/models/test_cuda.py (CUDA)."""
import os.path as osp

import torch
from helpers import REPO_ROOT, build_model
from mmaction.structures import ActionDataSample
from mmengine.config import Config

CLASSES = ['moving up', 'moving down', 'growing', 'shrinking']


def build(config, **backbone):
    """The model of a shipped config, class names given in place."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config)).model
    cfg.backbone.update(backbone)
    if cfg.get('cls_head', {}).get('type') == 'TextClassifierHead':
        cfg.cls_head.class_names = CLASSES
    return build_model(cfg)


def clips(model, n):
    bb = model.backbone
    size = getattr(bb, 'img_size', None) or (bb.image_size, ) * 2
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 3, bb.num_frames, *size, generator=g)


def labelled(n):
    return [
        ActionDataSample().set_gt_label(torch.tensor(i % len(CLASSES)))
        for i in range(n)
    ]


def check_step(model, inputs, samples, dtype, device='cpu'):
    """One autocast training step on ``device``: finite fp32 loss, finite
    gradients, some trainable tensor gets a non-zero gradient."""
    model.to(device).train()
    inputs = inputs.to(device)
    samples = [s.to(device) for s in samples]
    with torch.autocast(torch.device(device).type, dtype=dtype):
        losses = model.loss(inputs, samples)
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert loss.dtype == torch.float32 and torch.isfinite(loss), losses
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    for name, p in trainable.items():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in trainable.values())
    return losses
