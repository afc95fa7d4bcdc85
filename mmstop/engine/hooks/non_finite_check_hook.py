# Copyright (c) mmstop contributors. All rights reserved.
"""Stop (or skip the step) when training produces non-finite numbers."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmstop.registry import HOOKS

_ACTIONS = ('stop', 'skip')


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss, gradient or parameter."""


def _first_non_finite(named: Sequence) -> Optional[str]:
    """Name of the first tensor with a NaN/inf, or None (one sync)."""
    named = [(n, t) for n, t in named if t is not None]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Catch a NaN/inf loss or gradient before it reaches the weights.

    Before every optimizer step (a ``torch.optim`` step pre-hook, so after
    gradient clipping and for every optimizer of an ``OptimWrapperDict``)
    the gradients of the trainable parameters are checked. A non-finite
    gradient cancels the update: the gradients are dropped, so the step
    leaves the parameters and the optimizer state untouched. After the
    iteration the hook looks at the loss (and, with ``check_params``, the
    trainable parameters) and then

    * ``action='stop'``: raises :class:`NonFiniteError` naming the
      iteration, the loss and the first non-finite gradient or parameter.
      The hook runs before ``CheckpointHook`` (priority ``ABOVE_NORMAL``),
      so no checkpoint of the broken state is written;
    * ``action='skip'``: logs a warning with the same information and goes
      on (the update was already cancelled). Non-finite *parameters* always
      stop the run: there is nothing left to skip.

    Under AMP with a loss scaler, steps with inf gradients are skipped by
    the scaler before the optimizer sees them (the usual fp16 scaling);
    the hook then only reports a non-finite loss.

    Args:
        action (str): ``'stop'`` or ``'skip'``. Defaults to ``'stop'``.
        check_params (bool): Also check the trainable parameters after each
            iteration. Defaults to True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, action: str = 'stop', check_params: bool = True):
        if action not in _ACTIONS:
            raise ValueError(
                f'NonFiniteCheckHook action must be one of {_ACTIONS}, got '
                f'{action!r}')
        self.action = action
        self.check_params = check_params
        self._names: Dict[int, str] = {}
        self._handles: List = []
        self._bad_grad: Optional[str] = None
        self.skipped_steps = 0

    # -- set-up --------------------------------------------------------------
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._names = {id(p): n for n, p in model.named_parameters()}
        wrapper = runner.optim_wrapper
        wrappers = (
            list(wrapper.optim_wrappers.values()) if isinstance(
                wrapper, OptimWrapperDict) else [wrapper])
        for w in wrappers:
            if isinstance(w, OptimWrapper):
                self._handles.append(
                    w.optimizer.register_step_pre_hook(self._check_grads))

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- checks --------------------------------------------------------------
    def _check_grads(self, optimizer, args, kwargs) -> None:
        params = [
            p for group in optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]
        bad = _first_non_finite([(self._names.get(id(p), '<unnamed>'), p.grad)
                                 for p in params])
        if bad is None:
            return
        self._bad_grad = self._bad_grad or bad
        for p in params:  # the optimizer skips parameters without gradient
            p.grad = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad_grad, self._bad_grad = self._bad_grad, None
        loss = (outputs or {}).get('loss')
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
        loss_value = float(loss) if loss is not None else None
        bad_loss = loss_value is not None and not torch.isfinite(
            torch.tensor(loss_value))
        bad_param = None
        if self.check_params:
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            bad_param = _first_non_finite([
                (n, p) for n, p in model.named_parameters() if p.requires_grad
            ])
        if bad_grad is None and not bad_loss and bad_param is None:
            return
        what = []
        if bad_grad is not None:
            what.append(f'first non-finite gradient: {bad_grad} (the '
                        'optimizer step was cancelled)')
        if bad_param is not None:
            what.append(f'first non-finite parameter: {bad_param}')
        message = (f'non-finite training state at iteration {runner.iter + 1}'
                   f' (epoch {runner.epoch + 1}): loss {loss_value}; ' +
                   '; '.join(what or ['gradients and parameters finite']))
        if self.action == 'stop' or bad_param is not None:
            raise NonFiniteError(
                message + '. The run stops before a checkpoint of this state '
                "is written (NonFiniteCheckHook(action='skip') skips such "
                'steps instead).')
        self.skipped_steps += 1
        runner.logger.warning(f'{message}; step skipped '
                              f'({self.skipped_steps} so far)')
