# Copyright (c) mmstop contributors. All rights reserved.
"""ResolvedConfigRunner: builds what the overridden top-level variables
derive, and refuses configs whose class counts disagree, naming the keys."""
import os.path as osp

import pytest
from helpers import REPO_ROOT
from mmengine.config import Config

from mmstop.engine import ResolvedConfigRunner
from mmstop.registry import RUNNERS

SSP_DEMO = osp.join(REPO_ROOT, 'configs', 'ssp_videomamba_demo.py')
STOP_DEMO = osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py')


def ssp_demo(tmp_path, **options):
    cfg = Config.fromfile(SSP_DEMO)
    cfg.merge_from_dict(dict(options, work_dir=str(tmp_path / 'work')))
    return cfg


def test_registered_runner_builds_the_rederived_model(tmp_path):
    cfg = ssp_demo(tmp_path, num_classes=6)
    assert cfg.runner_type == 'ResolvedConfigRunner'
    runner = RUNNERS.build(cfg)  # as tools/train.py and MMAction2's do
    assert isinstance(runner, ResolvedConfigRunner)
    assert runner.model.cls_head.fc_cls.out_features == 6
    augments = runner.model.data_preprocessor.blending.augments
    assert [a.num_classes for a in augments if a is not None] == [6, 6]
    assert runner.cfg.train_dataloader.dataset.num_classes == 6
    assert runner.cfg.test_dataloader.dataset.num_classes == 6


def test_head_and_mixup_class_counts_must_agree(tmp_path):
    cfg = ssp_demo(tmp_path, **{'model.cls_head.num_classes': 6})
    with pytest.raises(ValueError) as error:
        ResolvedConfigRunner.from_cfg(cfg)
    message = str(error.value)
    assert 'model.cls_head.num_classes=6 but ' in message
    assert ('model.data_preprocessor.blending.augments.0.num_classes=4 '
            '(MixupBlending)') in message


def test_dataset_class_count_must_agree(tmp_path):
    cfg = ssp_demo(tmp_path, **{'val_dataloader.dataset.num_classes': 5})
    with pytest.raises(
            ValueError,
            match=r'val_dataloader\.dataset\.'
            'num_classes=5 but num_classes=4'):
        ResolvedConfigRunner.from_cfg(cfg)


def test_class_name_files_must_agree(tmp_path):
    four, three = tmp_path / 'four.txt', tmp_path / 'three.txt'
    four.write_text('a\nb\nc\nd\n')
    three.write_text('a\nb\nc\n')
    cfg = Config.fromfile(STOP_DEMO)
    cfg.merge_from_dict({
        'classnames_file': str(four),
        'test_dataloader.dataset.classnames_file': str(three),
        'work_dir': str(tmp_path / 'work')
    })
    with pytest.raises(
            ValueError,
            match='test_dataloader.dataset.classnames_'
            'file=3 but model.cls_head.class_names=4'):
        ResolvedConfigRunner.from_cfg(cfg)


def test_a_child_file_that_only_sets_num_classes_is_refused(tmp_path):
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = [{SSP_DEMO!r}]\nnum_classes = 6\n")
    cfg = Config.fromfile(str(child))
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises(
            ValueError,
            match='num_classes=6 but model.cls_head.'
            'num_classes=4.*must re-assign'):
        ResolvedConfigRunner.from_cfg(cfg)
