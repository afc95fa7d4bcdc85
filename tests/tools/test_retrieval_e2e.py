# Copyright (c) mmstop contributors. All rights reserved.
"""End to end retrieval on the tiny demo: tools/train.py then tools/test.py
(subprocesses, CPU, HF_HUB_OFFLINE=1) with configs/stop_clip_retrieval_demo.py
on the generated video-text demo dataset."""
import json
import os.path as osp
import pickle
import re
import sys

import pytest
import torch
from helpers import REPO_ROOT

from mmstop.datasets import generate_demo_dataset

CONFIG = osp.join(REPO_ROOT, 'configs', 'stop_clip_retrieval_demo.py')
NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2, 2
METRIC_KEYS = [
    f'retrieval/{d}/{m}' for d in ('t2v', 'v2t')
    for m in ('R@1', 'R@5', 'R@10', 'MdR', 'MnR')
]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=NUM_CLASSES,
        train_per_class=TRAIN_PER_CLASS,
        val_per_class=VAL_PER_CLASS,
        seed=0)


def data_options(demo):
    options = []
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val'), ('test_dataloader',
                                                      'val')):
        options += [
            f'{loader}.dataset.ann_file={demo["captions_" + split]}',
            f'{loader}.dataset.data_prefix.video={demo["video_dir"]}',
        ]
    return options


def metrics_line(output, tag):
    lines = [ln for ln in output.splitlines() if tag in ln]
    assert lines, f'no {tag!r} line in the log'
    values = dict(re.findall(r'(retrieval/\S+): ([0-9.]+)', lines[-1]))
    assert sorted(values) == sorted(METRIC_KEYS), lines[-1]
    return {k: float(v) for k, v in values.items()}


@pytest.mark.slow
def test_train_then_test(run_tool, demo, tmp_path):
    with open(demo['captions_val']) as f:
        val = json.load(f)
    num_videos = len(val)
    num_captions = sum(len(e['captions']) for e in val)

    work = str(tmp_path / 'work')
    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'), CONFIG, '--work-dir', work,
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        *data_options(demo)
    ], tmp_path / 'train.log')
    assert 'loss_sim' in out and 'global_batch: 4.0000' in out
    assert 'STOPSimilarity evaluation: batch size 4 per process' in out
    val_metrics = metrics_line(out, 'Epoch(val) [1]')
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    assert osp.isfile(osp.join(work, 'best_retrieval_t2v_R@1_epoch_1.pth'))
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert any(
        k.startswith('backbone.prompt_generator.')
        for k in state['state_dict'])

    dump = str(tmp_path / 'test' / 'predictions.pkl')
    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'test.py'), CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'test'), '--dump', dump, '--cfg-options',
        *data_options(demo)
    ], tmp_path / 'test.log')
    assert f'{num_captions} captions x {num_videos} videos' in out
    test_metrics = metrics_line(out, 'Epoch(test)')
    # same checkpoint, same data, same fixed batch size: same numbers
    assert test_metrics == val_metrics
    for key, value in test_metrics.items():
        if 'R@' in key:
            assert 0 <= value <= 100
        else:
            assert 1 <= value <= num_videos  # ranks
    assert test_metrics['retrieval/t2v/R@10'] == 100.0  # 8 videos only

    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == num_videos
    for p, entry in zip(
            sorted(predictions, key=lambda p: p['sample_idx']), val):
        assert p['video_feature'].shape == (64, )
        assert p['text_feature'].shape == (len(entry['captions']), 64)
        assert p['text'] == entry['captions']
