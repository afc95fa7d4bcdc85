# Copyright (c) mmstop contributors. All rights reserved.
import os.path as osp

import pytest

from mmstop.utils.fileio import AtomicLocalBackend


class Killed(Exception):
    pass


def test_crash_while_saving_keeps_the_previous_checkpoint(toy_runner):
    runner = toy_runner(
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=100),
            checkpoint=dict(
                type='AtomicCheckpointHook',
                interval=1,
                by_epoch=False,
                max_keep_ckpts=1)))
    save = runner.save_checkpoint

    def dies_at_iter_3(out_dir, filename, *args, **kwargs):
        if filename == 'iter_3.pth':
            raise Killed
        return save(out_dir, filename, *args, **kwargs)

    runner.save_checkpoint = dies_at_iter_3
    with pytest.raises(Killed):
        runner.train()
    work = runner.work_dir
    # MMEngine's CheckpointHook deletes iter_2.pth before writing iter_3.pth
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert not osp.exists(osp.join(work, 'iter_1.pth'))  # still rotates
    hook = [
        h for h in runner.hooks if type(h).__name__ == 'AtomicCheckpointHook'
    ][0]
    assert isinstance(hook.file_backend, AtomicLocalBackend)
