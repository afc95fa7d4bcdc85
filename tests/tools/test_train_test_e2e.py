# Copyright (c) mmstop contributors. All rights reserved.
"""End to end on the STOP demo config: tools/train.py, --resume, tools/test.py,
tools/dist_train.sh.

Every run is a subprocess on the synthetic demo dataset, CPU only; the
distributed run is 2 torchrun processes talking over gloo.

The model config is the single parameter :func:`e2e_config`; the dataset paths
are given with ``--cfg-options`` (:func:`data_options`), so any config whose
dataloaders hold an MMAction2-style video dataset can be swapped in.
"""
import math
import os.path as osp
import pickle
import socket
import sys

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config

from mmstop.datasets import generate_demo_dataset

NUM_TRAIN, NUM_VAL = 16, 8  # 4 classes x (4 train, 2 val) demo videos


@pytest.fixture(scope='module')
def e2e_config():
    """Path of the config under test (the single parameter of this module):
    the built-in STOP demo (tiny random CLIP, official prompt modules)."""
    return osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=4,
        train_per_class=NUM_TRAIN // 4,
        val_per_class=NUM_VAL // 4,
        seed=0)


def data_options(demo):
    """--cfg-options pointing every dataloader at the demo dataset."""
    # validate every epoch; the head reads the class names too
    options = [
        'train_cfg.val_interval=1',
        f'model.cls_head.class_names={demo["classnames_file"]}'
    ]
    for loader, ann in (('train_dataloader', 'train_ann'),
                        ('val_dataloader', 'val_ann'), ('test_dataloader',
                                                        'val_ann')):
        prefix = f'{loader}.dataset.'
        options += [
            f'{prefix}ann_file={demo[ann]}',
            f'{prefix}data_prefix.video={demo["video_dir"]}',
            f'{prefix}classnames_file={demo["classnames_file"]}',
        ]
    return options


def tool(name):
    return osp.join(REPO_ROOT, 'tools', name)


def load_ckpt(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_resume_test(run_tool, e2e_config, demo, tmp_path):
    work = str(tmp_path / 'work')
    # --cfg-options: 1 epoch instead of the config's 3, demo data paths
    out = run_tool([
        sys.executable,
        tool('train.py'), e2e_config, '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', *data_options(demo)
    ], tmp_path / 'train.log')
    assert 'Epoch(val) [1]' in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    first = load_ckpt(osp.join(work, 'epoch_1.pth'))
    iters_per_epoch = first['meta']['iter']
    assert first['meta']['epoch'] == 1 and iters_per_epoch > 0

    # --resume (auto): continues from epoch_1.pth with its optimizer state
    out = run_tool([
        sys.executable,
        tool('train.py'), e2e_config, '--work-dir', work, '--resume',
        '--cfg-options', 'train_cfg.max_epochs=2', *data_options(demo)
    ], tmp_path / 'resume.log')
    assert 'resuming from the newest intact checkpoint' in out
    assert 'resumed epoch: 1' in out
    second = load_ckpt(osp.join(work, 'epoch_2.pth'))
    assert second['meta']['epoch'] == 2
    assert second['meta']['iter'] == 2 * iters_per_epoch
    # the optimizer and scheduler states came back too: AdamW moments
    # exist, both schedulers counted every iteration of the two runs, and
    # the lr is the config's schedule there (warm-up over 0.1 of the
    # config's epochs, then cosine to 1e-8 over the remaining 0.9)
    assert second['optimizer']['state']
    cfg = Config.fromfile(e2e_config)
    base_lr, epochs = cfg.optim_wrapper.optimizer.lr, cfg.max_epochs
    step = 2 * iters_per_epoch
    for scheduler in second['param_schedulers']:
        assert scheduler['_global_step'] == step
    warm, total = 0.1 * epochs * iters_per_epoch, epochs * iters_per_epoch
    expected = 1e-8 + (base_lr - 1e-8) * 0.5 * (1 + math.cos(math.pi *
                                                             (step - warm) /
                                                             (total - warm)))
    lrs = [g['lr'] for g in second['optimizer']['param_groups']]
    assert lrs == pytest.approx([expected] * len(lrs))

    # tools/test.py CONFIG CHECKPOINT --dump
    dump = str(tmp_path / 'test' / 'predictions.pkl')
    out = run_tool([
        sys.executable,
        tool('test.py'), e2e_config,
        osp.join(work, 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--dump', dump, '--cfg-options',
        *data_options(demo)
    ], tmp_path / 'test.log')
    assert 'Epoch(test)' in out and 'acc/top1' in out
    assert 'Loads checkpoint by local backend from path' in out
    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == NUM_VAL
    assert all(p['pred_score'].shape == (4, ) for p in predictions)


@pytest.mark.slow
def test_dist_train_two_processes_gloo(run_tool, e2e_config, demo, tmp_path):
    work = str(tmp_path / 'work')
    out = run_tool([
        'bash',
        tool('dist_train.sh'), e2e_config, '2', '--work-dir', work,
        '--cfg-options', 'train_cfg.max_epochs=1', *data_options(demo)
    ],
                   tmp_path / 'dist_train.log',
                   PORT=str(free_port()))
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out  # MMEngine's wording for the world size
    ckpt = load_ckpt(osp.join(work, 'epoch_1.pth'))
    # DistributedSampler: each of the 2 ranks sees half the videos per epoch
    assert ckpt['meta']['iter'] == NUM_TRAIN // (2 * 4)
    assert 'Epoch(val) [1]' in out
