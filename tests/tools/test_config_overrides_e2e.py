# Copyright (c) mmstop contributors. All rights reserved.
"""End to end: top-level variables and prompt modes set on the command line
(subprocesses, CPU, tiny demo models and data).

* tools/train.py on the STOP demo switched to both paper prompt modes with
  one option each, data and epochs given as top-level variables;
* MMAction2's own tools/train.py on the SSP demo with ``num_classes=6`` on a
  6-class dataset: the head, Mixup/CutMix and datasets all follow (with
  Mixup left at 4 classes the labels 4 and 5 would fail in its one-hot).
"""
import os.path as osp
import sys

import pytest
import torch
from helpers import REPO_ROOT

from mmstop.datasets import generate_demo_dataset


def config(name):
    return osp.join(REPO_ROOT, 'configs', name)


def data_variables(demo, val='ann_file_val'):
    return [
        f'data_root={demo["video_dir"]}',
        f'ann_file_train={demo["train_ann"]}', f'{val}={demo["val_ann"]}'
    ]


def load_state(path):
    return torch.load(path, map_location='cpu', weights_only=False)


@pytest.mark.slow
def test_paper_modes_switch_from_the_command_line(run_tool, tmp_path):
    demo = generate_demo_dataset(
        str(tmp_path / 'demo'),
        num_classes=4,
        train_per_class=2,
        val_per_class=1,
        seed=0)
    work = str(tmp_path / 'work')
    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'),
        config('stop_clip_demo.py'), '--work-dir', work, '--cfg-options',
        'model.backbone.intra_prompt.mode=paper',
        'model.backbone.inter_prompt.mode=paper', 'max_epochs=5',
        f'classnames_file={demo["classnames_file"]}', *data_variables(demo)
    ], tmp_path / 'train.log')
    assert 're-derived' in out and 'Epoch(val) [5]' in out
    state = load_state(osp.join(work, 'epoch_5.pth'))['state_dict']
    modules = {'.'.join(k.split('.')[:3]) for k in state}
    # the paper modules (token prompters, per-count heads), not the
    # official ones (pixel generator, fixed-count MLP)
    assert {'backbone.intra_prompt.prompters',
            'backbone.inter_prompt.heads'} <= modules
    assert not {
        'backbone.intra_prompt.generator', 'backbone.inter_prompt.mlp'
    } & modules


@pytest.mark.slow
def test_num_classes_through_mmaction2_train_tool(run_tool, tmp_path):
    import mmaction
    tool = osp.join(
        osp.dirname(mmaction.__file__), '.mim', 'tools', 'train.py')
    if not osp.isfile(tool):
        pytest.skip(f'MMAction2 installed without its tools ({tool})')
    demo = generate_demo_dataset(
        str(tmp_path / 'demo'),
        num_classes=6,
        train_per_class=2,
        val_per_class=1,
        seed=0)
    work = str(tmp_path / 'work')
    out = run_tool([
        sys.executable, tool,
        config('ssp_videomamba_demo.py'), '--work-dir', work, '--cfg-options',
        'num_classes=6', 'train_cfg.max_epochs=1', *data_variables(demo)
    ], tmp_path / 'train.log')
    assert 'Epoch(train) [1][3/3]' in out  # 12 videos, batch 4
    state = load_state(osp.join(work, 'epoch_1.pth'))['state_dict']
    assert state['cls_head.fc_cls.weight'].shape == (6, 192)
