# Copyright (c) mmstop contributors. All rights reserved.
"""Command-line handling of tools/train.py, tools/test.py and the demo CLI."""
import os.path as osp

import pytest
from mmengine.config import Config


@pytest.fixture(scope='module')
def train_tool(load_tool):
    return load_tool('tools/train.py')


@pytest.fixture(scope='module')
def test_tool(load_tool):
    return load_tool('tools/test.py')


def base_cfg():
    return Config(
        dict(
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            train_cfg=dict(max_epochs=3),
            test_evaluator=dict(type='AccMetric'),
            val_cfg=dict(type='ValLoop'),
            val_dataloader=dict(batch_size=1),
            val_evaluator=dict(type='AccMetric')))


def train_cfg(tool, *argv, cfg=None):
    args = tool.parse_args(['configs/some_model.py', *argv])
    return tool.merge_args(cfg or base_cfg(), args)


def test_train_defaults(train_tool):
    cfg = train_cfg(train_tool)
    assert cfg.work_dir == osp.join('./work_dirs', 'some_model')
    assert cfg.launcher == 'none'
    assert cfg.default_scope == 'mmaction'
    assert cfg.get('resume', False) is False
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert cfg.randomness == dict(
        seed=None, diff_rank_seed=False, deterministic=False)


def test_train_work_dir_and_launcher(train_tool):
    cfg = train_cfg(train_tool, '--work-dir', 'w', '--launcher', 'pytorch',
                    '--local-rank', '0')
    assert cfg.work_dir == 'w' and cfg.launcher == 'pytorch'


def test_train_resume_auto_and_path(train_tool, tmp_path):
    cfg = train_cfg(train_tool, '--resume')
    assert cfg.resume is True and cfg.load_from is None
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    cfg = train_cfg(train_tool, '--resume', str(ckpt))
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    with pytest.raises(SystemExit, match='missing.pth does not exist'):
        train_cfg(train_tool, '--resume', str(tmp_path / 'missing.pth'))


def test_train_cfg_options_win(train_tool):
    cfg = train_cfg(train_tool, '--seed', '3', '--cfg-options',
                    'train_cfg.max_epochs=1', 'randomness.seed=5',
                    'optim_wrapper.optimizer.lr=0.5')
    assert cfg.train_cfg.max_epochs == 1
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.randomness.seed == 5


def test_train_seed_updates_existing_randomness(train_tool):
    cfg = base_cfg()
    cfg.randomness = dict(seed=0)
    cfg = train_cfg(train_tool, '--seed', '9', '--deterministic', cfg=cfg)
    assert cfg.randomness.seed == 9 and cfg.randomness.deterministic


def test_train_no_validate(train_tool):
    cfg = train_cfg(train_tool, '--no-validate')
    assert cfg.val_cfg is None and cfg.val_dataloader is None


def test_train_auto_scale_lr(train_tool):
    with pytest.raises(SystemExit, match='auto_scale_lr = dict'):
        train_cfg(train_tool, '--auto-scale-lr')
    cfg = base_cfg()
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=64)
    cfg = train_cfg(train_tool, '--auto-scale-lr', cfg=cfg)
    assert cfg.auto_scale_lr.enable is True


def test_train_amp(train_tool, monkeypatch):
    monkeypatch.setattr(train_tool, '_amp_device_available', lambda: False)
    with pytest.raises(SystemExit, match='--amp needs a GPU'):
        train_cfg(train_tool, '--amp')
    monkeypatch.setattr(train_tool, '_amp_device_available', lambda: True)
    cfg = train_cfg(train_tool, '--amp')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.dtype == 'float16'  # MMAction2's default
    cfg = base_cfg()
    cfg.optim_wrapper.type = 'MyWrapper'
    with pytest.raises(
            SystemExit, match="custom optim_wrapper type 'MyWrapper'"):
        train_cfg(train_tool, '--amp', cfg=cfg)


def test_train_amp_dtype(train_tool, monkeypatch):
    monkeypatch.setattr(train_tool, '_amp_device_available', lambda: True)
    # the config's AMP dtype (SSP: bf16) is kept, with no loss scaling
    cfg = base_cfg()
    cfg.amp_dtype = 'bfloat16'
    cfg = train_cfg(train_tool, '--amp', cfg=cfg)
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == 1.0
    cfg = base_cfg()
    cfg.optim_wrapper.dtype = 'bfloat16'
    assert train_cfg(
        train_tool, '--amp', cfg=cfg).optim_wrapper.dtype == 'bfloat16'
    # the command line wins
    cfg = base_cfg()
    cfg.amp_dtype = 'bfloat16'
    cfg = train_cfg(train_tool, '--amp', '--amp-dtype', 'float16', cfg=cfg)
    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    with pytest.raises(SystemExit, match='--amp-dtype needs --amp'):
        train_cfg(train_tool, '--amp-dtype', 'bfloat16')


def test_train_missing_config(train_tool, tmp_path):
    with pytest.raises(
            SystemExit, match='config file .*nope.py does not exist'):
        train_tool.main([str(tmp_path / 'nope.py')])


def test_test_tool_args(test_tool, tmp_path):
    args = test_tool.parse_args([
        'configs/some_model.py', 'ckpt.pth', '--dump', 'out.pkl',
        '--cfg-options', 'test_evaluator.type=RetrievalMetric'
    ])
    cfg = test_tool.merge_args(base_cfg(), args)
    assert cfg.load_from == 'ckpt.pth' and cfg.resume is False
    assert cfg.work_dir == osp.join('./work_dirs', 'some_model')
    assert cfg.test_evaluator == [
        dict(type='RetrievalMetric'),
        dict(type='DumpResults', out_file_path='out.pkl')
    ]
    args = test_tool.parse_args(
        ['c.py', 'ckpt.pth', '--dump', 'out.json', '--work-dir', 'w'])
    with pytest.raises(SystemExit, match='pkl'):
        test_tool.merge_args(base_cfg(), args)


def test_test_tool_missing_checkpoint(test_tool, tmp_path):
    config = tmp_path / 'c.py'
    config.write_text('')
    with pytest.raises(SystemExit, match='checkpoint file .*gone.pth'):
        test_tool.main([str(config), str(tmp_path / 'gone.pth')])


def test_generate_demo_cli(load_tool, tmp_path, capsys):
    cli = load_tool('tools/data/generate_demo_dataset.py')
    out = cli.main([
        str(tmp_path), '--num-classes', '2', '--train-per-class', '1',
        '--val-per-class', '1', '--size', '80', '64', '--seed', '4'
    ])
    assert out['classes'] == ('moving up', 'moving down')
    assert 'wrote 2 train + 2 val videos' in capsys.readouterr().out
    with open(osp.join(tmp_path, 'train.txt')) as f:
        assert f.read().splitlines() == [
            'train_0000.mp4 0', 'train_0001.mp4 1'
        ]
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), '--size', '1', '2', '3'])
