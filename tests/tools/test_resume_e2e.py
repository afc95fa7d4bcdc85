# Copyright (c) mmstop contributors. All rights reserved.
"""kill -9 during training, then --resume: bit-identical to a run that was
never interrupted (STOP demo config, subprocesses, CPU)."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO_ROOT

from mmstop.datasets import generate_demo_dataset
from mmstop.utils.checkpoint import safe_torch_load

CONFIG = osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py')
TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=4,
        train_per_class=4,
        val_per_class=2,
        seed=0)


def train_argv(demo, work, *extra):
    """2 epochs, a checkpoint and a validation after each (the validation
    between the checkpoint and the next epoch must not shift the random
    streams), on the demo data."""
    options = [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        f'model.cls_head.class_names={demo["classnames_file"]}'
    ]
    for loader, ann in (('train_dataloader', 'train_ann'), ('val_dataloader',
                                                            'val_ann')):
        options += [
            f'{loader}.dataset.ann_file={demo[ann]}',
            f'{loader}.dataset.data_prefix.video={demo["video_dir"]}',
            f'{loader}.dataset.classnames_file={demo["classnames_file"]}',
        ]
    return [
        sys.executable, TRAIN, CONFIG, '--work-dir',
        str(work), *extra, '--cfg-options', *options
    ]


def assert_identical(a, b, where=''):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f'{where}/{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


@pytest.mark.slow
def test_kill_then_resume_is_bit_identical(run_tool, demo, tmp_path):
    straight = tmp_path / 'straight'
    run_tool(train_argv(demo, straight), tmp_path / 'straight.log')

    # the same run, killed once its first checkpoint exists
    killed = tmp_path / 'killed'
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    with open(tmp_path / 'killed.log', 'w') as log:
        proc = subprocess.Popen(
            train_argv(demo, killed),
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (killed / 'epoch_1.pth').exists():
            assert proc.poll() is None, 'the run ended before epoch 1'
            assert time.time() < deadline, 'no checkpoint within 300 s'
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (killed / 'epoch_2.pth').exists(), 'killed too late'

    out = run_tool(
        train_argv(demo, killed, '--resume'), tmp_path / 'resumed.log')
    assert 'resuming from the newest intact checkpoint' in out
    assert 'restored the torch, numpy and Python random states' in out

    a = safe_torch_load(str(straight / 'epoch_2.pth'))
    b = safe_torch_load(str(killed / 'epoch_2.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] > 0
    assert_identical(a['state_dict'], b['state_dict'], 'state_dict')
    assert_identical(a['optimizer'], b['optimizer'], 'optimizer')
    assert_identical(a['param_schedulers'], b['param_schedulers'],
                     'param_schedulers')
    assert_identical(a['random_state'], b['random_state'], 'random_state')
