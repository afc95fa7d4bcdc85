# Copyright (c) mmstop contributors. All rights reserved.
"""tools/train.py --resume: the newest intact checkpoint is used."""
import pytest
import torch


@pytest.fixture(scope='module')
def train_tool(load_tool):
    return load_tool('tools/train.py')


def resume_cfg(tool, work):
    from mmengine.config import Config
    args = tool.parse_args(
        ['configs/x.py', '--work-dir',
         str(work), '--resume'])
    return tool.merge_args(Config(dict(train_cfg=dict(max_epochs=3))), args)


def test_truncated_latest_checkpoint_falls_back(train_tool, tmp_path,
                                                monkeypatch):
    logs = []
    monkeypatch.setattr('mmstop.utils.checkpoint.print_log',
                        lambda msg, **kwargs: logs.append(msg))
    work = tmp_path / 'work'
    work.mkdir()
    for epoch in (1, 2):
        torch.save({'meta': {'epoch': epoch}}, work / f'epoch_{epoch}.pth')
    latest = work / 'epoch_2.pth'
    latest.write_bytes(latest.read_bytes()[:100])  # killed while writing
    (work / 'last_checkpoint').write_text(str(latest))
    cfg = resume_cfg(train_tool, work)
    assert cfg.resume is True
    assert cfg.load_from == str(work / 'epoch_1.pth')
    assert any(str(latest) in m and 'skipping' in m for m in logs), logs


def test_no_intact_checkpoint_is_an_error(train_tool, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    with pytest.raises(SystemExit, match='no intact checkpoint.*epoch_1.pth'):
        resume_cfg(train_tool, work)
    # an empty work dir: MMEngine's fresh start
    assert resume_cfg(train_tool, tmp_path / 'new').load_from is None
