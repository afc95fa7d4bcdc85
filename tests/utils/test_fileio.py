# Copyright (c) mmstop contributors. All rights reserved.
"""Atomic writes: a write that dies half-way leaves the old file intact."""
import os

import pytest
import torch
from mmengine.fileio import get_file_backend

from mmstop.utils.fileio import AtomicLocalBackend, atomic_torch_save


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_1.pth'
    atomic_torch_save({'w': torch.ones(3)}, path)
    old = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies before the rename

    monkeypatch.setattr(os, 'replace', killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'w': torch.zeros(1000)}, path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']


def test_backend_is_registered_for_checkpoint_hook(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='local_atomic'))
    assert isinstance(backend, AtomicLocalBackend)
    target = tmp_path / 'sub' / 'last_checkpoint'
    backend.put_text('epoch_3.pth', target)
    backend.put(b'abc', tmp_path / 'x.bin')
    assert target.read_text() == 'epoch_3.pth'
    assert (tmp_path / 'x.bin').read_bytes() == b'abc'
    mode = os.stat(target).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
