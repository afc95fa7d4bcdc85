# Copyright (c) mmstop contributors. All rights reserved.
import os.path as osp

import pytest
import torch

from mmstop.engine.hooks import NonFiniteCheckHook, NonFiniteError
from mmstop.utils.checkpoint import safe_torch_load


def test_nan_gradient_stops_before_the_update_and_the_checkpoint(
        toy_runner, tmp_path):
    runner = toy_runner(
        nan_at=3, custom_hooks=[dict(type='NonFiniteCheckHook')])
    with pytest.raises(NonFiniteError) as err:
        runner.train()
    msg = str(err.value)
    assert 'iteration 3' in msg and 'loss ' in msg
    assert 'first non-finite gradient: body.weight' in msg
    work = str(tmp_path / 'work')
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert not osp.exists(osp.join(work, 'iter_3.pth'))
    # the NaN step was cancelled: the weights are iteration 2's
    saved = safe_torch_load(osp.join(work, 'iter_2.pth'))['state_dict']
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_skip_mode_goes_on_with_finite_weights(toy_runner):
    hook = NonFiniteCheckHook(action='skip')
    runner = toy_runner(nan_at=3, custom_hooks=[hook])
    runner.train()
    assert hook.skipped_steps == 1
    assert runner.iter == 8
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_bad_action():
    with pytest.raises(ValueError, match="'stop', 'skip'"):
        NonFiniteCheckHook(action='ignore')
