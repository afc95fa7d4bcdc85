# Copyright (c) mmstop contributors. All rights reserved.
"""End to end: configs/ssp_videomamba_demo.py through tools/train.py and
tools/test.py (subprocesses, CPU) on a freshly generated demo dataset."""
import os.path as osp
import pickle
import re
import sys

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.datasets import generate_demo_dataset
from mmstop.registry import MODELS

CONFIG = osp.join(REPO_ROOT, 'configs', 'ssp_videomamba_demo.py')


def data_options(demo):
    options = []
    for loader, ann in (('train_dataloader', 'train_ann'),
                        ('val_dataloader', 'val_ann'), ('test_dataloader',
                                                        'val_ann')):
        options += [
            f'{loader}.dataset.ann_file={demo[ann]}',
            f'{loader}.dataset.data_prefix.video={demo["video_dir"]}',
        ]
    return options


def trainable_names():
    init_default_scope('mmaction')
    model = MODELS.build(Config.fromfile(CONFIG).model)
    return [k for k, p in model.named_parameters() if p.requires_grad]


@pytest.mark.slow
def test_ssp_demo_train_then_test(run_tool, tmp_path):
    demo = generate_demo_dataset(
        str(tmp_path / 'demo'),
        num_classes=4,
        train_per_class=4,
        val_per_class=2,
        seed=0)
    cfg = Config.fromfile(CONFIG)
    epochs = cfg.train_cfg.max_epochs
    work = str(tmp_path / 'work')

    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'), CONFIG, '--work-dir', work,
        '--cfg-options', *data_options(demo)
    ], tmp_path / 'train.log')
    assert f'Epoch(val) [{epochs}]' in out and 'acc/top1' in out
    ckpt_path = osp.join(work, f'epoch_{epochs}.pth')
    assert osp.isfile(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == epochs
    # 16 videos, 4 per batch, drop_last: 4 iterations per epoch
    assert ckpt['meta']['iter'] == epochs * 4
    # AdamW holds state exactly for the trainable tensors (SSP, norm_f,
    # head): the frozen backbone never received a gradient
    names = trainable_names()
    assert all(
        n.startswith(('backbone.ssp.', 'backbone.norm_f.', 'cls_head.'))
        for n in names)
    assert len(ckpt['optimizer']['state']) == len(names)
    # the zero-initialised IFG local conv has been trained
    state = ckpt['state_dict']
    assert state['backbone.ssp.inner_prompt.conv.weight'].abs().sum() > 0

    dump = str(tmp_path / 'test' / 'predictions.pkl')
    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools',
                 'test.py'), CONFIG, ckpt_path, '--work-dir',
        str(tmp_path / 'test'), '--dump', dump, '--cfg-options',
        *data_options(demo)
    ], tmp_path / 'test.log')
    match = re.search(r'Epoch\(test\).*acc/top1: ([0-9.]+)', out)
    assert match, out[-3000:]
    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8  # 4 classes x 2 validation videos
    assert all(p['pred_score'].shape == (4, ) for p in predictions)
    # 2 x 3 views averaged as probabilities
    assert all(
        abs(float(p['pred_score'].sum()) - 1) < 1e-5 for p in predictions)
    correct = sum(
        int(p['pred_score'].argmax()) == int(p['gt_label'])
        for p in predictions)
    assert float(match.group(1)) == correct / len(predictions)
