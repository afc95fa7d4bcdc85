# Copyright (c) mmstop contributors. All rights reserved.
"""A tiny MMEngine runner for the hook tests: a linear model on random
vectors, CPU, no logging to the console."""
import uuid

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset


class ToyDataset(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        return dict(inputs=torch.randn(2, generator=g))


class ToyModel(BaseModel):
    """``loss = mean((head(body(x)))^2)``; ``nan_at`` makes the gradient of
    ``body.weight`` NaN at that (1-based) training iteration."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.body = nn.Linear(2, 3)
        self.head = nn.Linear(3, 1)
        self.nan_at = nan_at
        self.calls = 0
        self.body.weight.register_hook(self._poison)

    def _poison(self, grad):
        if self.nan_at is not None and self.calls == self.nan_at:
            return grad * float('nan')
        return grad

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.head(self.body(x))
        if mode == 'loss':
            self.calls += 1
            return dict(loss=out.pow(2).mean())
        return out


@pytest.fixture
def toy_runner(tmp_path):
    """``toy_runner(nan_at=None, **runner_kwargs) -> Runner`` (2 epochs
    of 4 iterations, checkpoint after every iteration)."""

    def make(nan_at=None, **kwargs):
        cfg = dict(
            model=ToyModel(nan_at),
            work_dir=str(tmp_path / 'work'),
            train_dataloader=dict(
                dataset=ToyDataset(),
                sampler=dict(type='DefaultSampler', shuffle=True),
                batch_size=2,
                num_workers=0),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            train_cfg=dict(by_epoch=True, max_epochs=2),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=100),
                checkpoint=dict(
                    type='CheckpointHook', interval=1, by_epoch=False)),
            randomness=dict(seed=0),
            default_scope='mmaction',
            log_level='WARNING',
            experiment_name=f'toy_{uuid.uuid4().hex}')
        cfg.update(kwargs)
        return Runner(**cfg)

    return make
