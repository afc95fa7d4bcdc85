# Copyright (c) mmstop contributors. All rights reserved.
"""Atomic file writes: a temporary file in the same folder, then a rename.

A process killed while writing (``kill -9``, out of memory, a full disk)
leaves the previous file intact and at worst a stray ``.<name>.tmp-*`` file,
never a truncated checkpoint. :class:`AtomicLocalBackend` is MMEngine's local
file backend with atomic ``put`` / ``put_text``, registered as
``'local_atomic'``; :class:`~mmstop.engine.hooks.AtomicCheckpointHook` (the
checkpoint hook of mmstop's configs) writes checkpoints through it.
"""
import io
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(data: bytes, path: Union[str, Path]) -> None:
    """Write ``data`` to ``path`` atomically (fsync, then ``os.replace``).

    Args:
        data (bytes): File content.
        path (str | Path): Destination; its folder is created if needed.
    """
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.tmp-', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_torch_save(obj, path: Union[str, Path]) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch
    with io.BytesIO() as buffer:
        torch.save(obj, buffer)
        atomic_write(buffer.getvalue(), path)


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` whose writes are atomic.

    ``put`` and ``put_text`` write a temporary file beside the target and
    rename it over the target, so readers (and a resumed run) only ever see
    a complete old or a complete new file.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes to ``filepath`` atomically.

        Args:
            obj (bytes): Data to be written.
            filepath (str | Path): Path to write data.
        """
        atomic_write(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically.

        Args:
            obj (str): Text to be written.
            filepath (str | Path): Path to write data.
            encoding (str): Text encoding. Defaults to ``'utf-8'``.
        """
        atomic_write(obj.encode(encoding), filepath)
