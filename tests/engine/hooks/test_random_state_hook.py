# Copyright (c) mmstop contributors. All rights reserved.
"""RandomStateHook (the end-to-end kill -9 / --resume check is in
tests/tools/test_resume_e2e.py)."""
import io
import random

import numpy as np
import torch

from mmstop.engine.hooks import (RandomStateHook, get_random_state,
                                 set_random_state)
from mmstop.utils.checkpoint import safe_torch_load


def draw():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(),
            [random.random() for _ in range(3)])


def test_state_round_trip_through_a_safe_checkpoint():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    draw()
    buffer = io.BytesIO()
    torch.save({'random_state': get_random_state()}, buffer)
    expected = draw()
    draw()
    buffer.seek(0)
    set_random_state(safe_torch_load(buffer)['random_state'])
    assert draw() == expected


def test_checkpoint_holds_state_and_resume_restores_it(toy_runner):
    runner = toy_runner(custom_hooks=[dict(type='RandomStateHook')])
    runner.train()
    checkpoint = safe_torch_load(f'{runner.work_dir}/iter_5.pth')
    entry = checkpoint['random_state']
    assert entry['world_size'] == 1 and len(entry['ranks']) == 1
    assert isinstance(entry['sampler_seed'], int)

    set_random_state(entry['ranks'][0])
    expected = draw()
    hook = RandomStateHook()
    resumed = toy_runner(
        custom_hooks=[hook],
        resume=True,
        load_from=f'{runner.work_dir}/iter_5.pth')
    resumed._train_loop = resumed.build_train_loop(resumed._train_loop)
    resumed.load_or_resume()  # after_load_checkpoint keeps the entry
    torch.manual_seed(123)  # whatever runs between the load and training
    np.random.seed(123)
    hook.before_train(resumed)
    assert draw() == expected
