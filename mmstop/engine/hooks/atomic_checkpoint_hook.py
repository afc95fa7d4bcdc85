# Copyright (c) mmstop contributors. All rights reserved.
"""MMEngine's CheckpointHook that never leaves a run without an intact
checkpoint."""
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from mmstop.registry import HOOKS


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and delete-after-save.

    Two differences from MMEngine's hook, so that a run killed at any
    moment (``kill -9``, out of memory, a full disk) keeps a checkpoint to
    resume from:

    * local checkpoints are written through the ``'local_atomic'`` file
      backend (:class:`~mmstop.utils.fileio.AtomicLocalBackend`: temporary
      file, then rename) unless ``backend_args`` names another backend;
    * with ``max_keep_ckpts``, the oldest checkpoint is deleted *after* the
      new one is written (MMEngine deletes it first, so a crash while saving
      with ``max_keep_ckpts=1`` leaves none).

    Args:
        backend_args (dict, optional): File backend arguments.
            Defaults to None: ``dict(backend='local_atomic')``.
        **kwargs: The other arguments of MMEngine's ``CheckpointHook``
            (``interval``, ``by_epoch``, ``max_keep_ckpts``, ``save_best``,
            ...).
    """

    def __init__(self, backend_args: Optional[dict] = None, **kwargs) -> None:
        if backend_args is None and kwargs.get('file_client_args') is None:
            backend_args = dict(backend='local_atomic')
        super().__init__(backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta):
        keep = self.max_keep_ckpts
        ids = getattr(self, 'keep_ckpt_ids', None)
        if keep <= 0 or ids is None or (ids and ids[-1] == step):
            return super()._save_checkpoint_with_step(runner, step, meta)
        oldest = ids[0] if len(ids) == keep else None
        # MMEngine removes the oldest file when the deque is full; with one
        # more allowed it removes nothing, and the deque (maxlen=keep) still
        # drops the oldest id when the new one is appended
        self.max_keep_ckpts = keep + 1
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts = keep
        if oldest is not None and is_main_process():
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(oldest))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)
