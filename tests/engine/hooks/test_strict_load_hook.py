# Copyright (c) mmstop contributors. All rights reserved.
import pytest
import torch

from mmstop.utils.checkpoint import CheckpointMismatchError


def _checkpoint(tmp_path, runner, **changes):
    state = dict(runner.model.state_dict())
    state.update(changes)
    path = str(tmp_path / 'ckpt.pth')
    torch.save(dict(meta=dict(epoch=1, iter=4), state_dict=state), path)
    return path


def test_mis_shaped_load_from_raises_naming_the_key(toy_runner, tmp_path):
    runner = toy_runner(custom_hooks=[dict(type='StrictLoadHook')])
    path = _checkpoint(
        tmp_path, runner, **{
            'head.weight': torch.zeros(1, 4),
            'extra.bias': torch.zeros(1)
        })
    with pytest.raises(CheckpointMismatchError) as err:
        runner.load_checkpoint(path)  # what load_from / tools/test.py do
    msg = str(err.value)
    assert 'head.weight: checkpoint (1, 4), model (1, 3)' in msg
    assert 'unexpected key(s) (in the checkpoint, not in the model): ' \
           'extra.bias' in msg


def test_missing_key_raises_and_allowed_keys_pass(toy_runner, tmp_path):
    runner = toy_runner(custom_hooks=[dict(type='StrictLoadHook')])
    state = dict(runner.model.state_dict())
    del state['body.bias']
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(
            CheckpointMismatchError, match=r'missing key.*body\.bias'):
        runner.load_checkpoint(path)

    runner = toy_runner(
        custom_hooks=[dict(type='StrictLoadHook', allow_mismatch=[r'head\.'])])
    init = runner.model.head.weight.detach().clone()
    donor = {
        k: torch.full_like(v, 0.5)
        for k, v in runner.model.state_dict().items()
    }
    donor['head.weight'] = torch.zeros(1, 4)  # a new head
    path = _checkpoint(tmp_path, runner, **donor)
    runner.load_checkpoint(path)
    assert torch.equal(runner.model.head.weight, init)
    assert torch.equal(runner.model.body.weight,
                       torch.full_like(runner.model.body.weight, 0.5))


def test_bad_pattern():
    from mmstop.engine.hooks import StrictLoadHook
    with pytest.raises(ValueError, match='not a regular expression'):
        StrictLoadHook(allow_mismatch=['head.('])
