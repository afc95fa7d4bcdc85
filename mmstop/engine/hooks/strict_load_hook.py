# Copyright (c) mmstop contributors. All rights reserved.
"""Fail a ``load_from`` / resume / ``tools/test.py`` load that does not
match the model."""
import re
from typing import Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmstop.registry import HOOKS
from mmstop.utils.checkpoint import extract_state_dict, load_state_dict_checked


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Load ``load_from`` / ``--resume`` / ``tools/test.py`` checkpoints
    strictly.

    MMEngine's runner loads those checkpoints with ``strict=False``: a
    tensor of the wrong shape only prints "size mismatch" and keeps its
    random init, and missing or unexpected keys pass. This hook loads the
    checkpoint itself when the runner has read it (``after_load_checkpoint``)
    with :func:`~mmstop.utils.checkpoint.load_state_dict_checked`, which
    raises an error naming every missing, unexpected and mis-shaped key
    unless it matches one of ``allow_mismatch``. State-dict pre-hooks of
    the model (e.g. VideoMamba's position-embedding interpolation and 2-D to
    3-D kernel inflation) still adapt tensors and log it. The runner's own
    load then receives the loaded model's state and has nothing left to do.

    Args:
        allow_mismatch (Sequence[str]): Regular expressions (``re.match`` at
            the start of the key) of keys that may be missing, unexpected or
            mis-shaped, e.g. ``[r'cls_head\\.']`` to fine-tune with a new
            head. Such keys keep the model's values and are logged.
            Defaults to ().
        revise_keys (Sequence[tuple[str, str]]): ``(pattern, replacement)``
            applied to the checkpoint keys first, as the runner does.
            Defaults to ``[(r'^module\\.', '')]``.
    """

    priority = 'VERY_HIGH'

    def __init__(
        self,
        allow_mismatch: Sequence[str] = (),
        revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )
    ) -> None:
        if isinstance(allow_mismatch, str):
            allow_mismatch = [allow_mismatch]
        for pattern in allow_mismatch:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f'StrictLoadHook allow_mismatch pattern {pattern!r} is '
                    f'not a regular expression: {exc}') from None
        self.allow_mismatch = list(allow_mismatch)
        self.revise_keys = [tuple(r) for r in revise_keys]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        filename = getattr(runner, '_load_from', None)
        source = (f'checkpoint {filename}'
                  if isinstance(filename, str) else 'the loaded checkpoint')
        state = extract_state_dict(
            checkpoint, source=source, revise_keys=self.revise_keys)
        load_state_dict_checked(
            model,
            state,
            self.allow_mismatch,
            source=source,
            hint='StrictLoadHook(allow_mismatch=[...]) in custom_hooks')
        loaded = model.state_dict()
        if 'state_dict' in checkpoint:
            checkpoint['state_dict'] = loaded
        else:  # a bare state dict: the runner loads the dict itself
            checkpoint.clear()
            checkpoint.update(loaded)
