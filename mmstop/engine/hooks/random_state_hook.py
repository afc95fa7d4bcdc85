# Copyright (c) mmstop contributors. All rights reserved.
"""Save and restore every random state of a run for exact resumption."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook

from mmstop.registry import HOOKS

STATE_KEY = 'random_state'


def get_random_state() -> dict:
    """The random states of this process, in checkpoint-safe types.

    Returns:
        dict: ``torch`` (CPU generator state, uint8 tensor), ``cuda`` (one
        state per visible device, or absent), ``numpy`` (the global
        ``RandomState`` as tensor + python values) and ``python``
        (``random.getstate()``, tuples of ints).
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(
            kind=str(kind),
            keys=torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached)),
        python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict) -> None:
    """Restore a state returned by :func:`get_random_state`."""
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32),
                         n['pos'], n['has_gauss'], n['cached_gaussian']))
    random.setstate(_as_tuples(state['python']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Make ``--resume`` continue a run exactly.

    MMEngine's checkpoints hold the weights, optimizer and scheduler states
    but not the random generators: after a resume the data sampling and
    augmentation (``numpy.random`` / ``random`` in the transforms of the
    main process, e.g. the frame sampler), dropout (``torch``) and the
    seeds torch draws for each dataloader iterator and its workers restart
    from the seed instead of continuing. This hook

    * writes the torch (CPU and CUDA), numpy and Python ``random`` states
      of every rank and the train sampler's seed into each checkpoint
      (``checkpoint['random_state']``; tensors and Python values only, so
      the safe loader reads it);
    * restores them when training resumes, right before the first resumed
      epoch (``before_train``, after MMEngine has re-seeded);
    * keeps validation during training from consuming the training
      streams (the states are restored after each validation), so a run
      that validates between its checkpoint and the next epoch continues
      exactly like one resumed from that checkpoint.

    Dataloader workers are re-seeded by MMEngine's ``worker_init_fn`` from
    the seed, the rank and the worker id whenever they start, which a resume
    reproduces when workers start every epoch (``num_workers=0`` or
    ``persistent_workers=False``). Persistent workers carry their streams
    across epochs inside the worker processes, which no checkpoint holds: a
    warning says so when such a run resumes.

    Args:
        isolate_val (bool): Restore the random states after validation
            during training. Defaults to True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, isolate_val: bool = True) -> None:
        self.isolate_val = isolate_val
        self._pending: Optional[dict] = None
        self._val_state: Optional[dict] = None
        self._gathered: Optional[List[dict]] = None
        self._training = False

    # -- saving ------------------------------------------------------------
    def _checkpoint_hook(self, runner) -> Optional[CheckpointHook]:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                return hook
        return None

    def _gather(self, runner) -> None:
        """All ranks' states (collective): only in distributed runs, and
        only where CheckpointHook is about to save."""
        state = self._val_state or get_random_state()
        self._gathered = all_gather_object(state)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        hook = self._checkpoint_hook(runner)
        if get_dist_info()[1] > 1 and hook is not None and not hook.by_epoch:
            if self.every_n_train_iters(
                    runner, hook.interval,
                    hook.save_begin) or (hook.save_last
                                         and self.is_last_train_iter(runner)):
                self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        hook = self._checkpoint_hook(runner)
        if get_dist_info()[1] > 1 and hook is not None and hook.by_epoch:
            if self.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and self.is_last_train_epoch(runner)):
                self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        rank, world_size = get_dist_info()
        if world_size > 1 and self._gathered is not None:
            states = self._gathered
        else:
            # inside a validation the training state is the one saved before
            states = [self._val_state or get_random_state()]
        self._gathered = None
        entry = dict(world_size=world_size, ranks=states)
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        if isinstance(getattr(sampler, 'seed', None), int):
            entry['sampler_seed'] = sampler.seed
        checkpoint[STATE_KEY] = entry

    # -- restoring ---------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(STATE_KEY)

    def after_train(self, runner) -> None:
        self._training = False

    def before_train(self, runner) -> None:
        self._training = True
        entry, self._pending = self._pending, None
        # load_from (iteration 0) starts a new run: only a resume restores
        resumed = runner.iter > 0
        if entry is None or not resumed:
            if resumed:
                runner.logger.warning(
                    'resume: the checkpoint holds no random states (written '
                    'without RandomStateHook); data sampling, augmentation '
                    'and dropout restart from the seed, so the resumed run '
                    'differs from an uninterrupted one')
            return
        rank, world_size = get_dist_info()
        states = entry['ranks']
        if len(states) == world_size:
            set_random_state(states[rank])
        else:
            runner.logger.warning(
                f'resume: the checkpoint holds the random states of '
                f'{len(states)} rank(s), this run has {world_size}: rank 0\'s '
                'state is restored on every rank, the resumed run is not '
                'exact')
            set_random_state(states[0])
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        if 'sampler_seed' in entry and hasattr(sampler, 'seed'):
            sampler.seed = entry['sampler_seed']
        loader = runner.train_dataloader
        if getattr(loader, 'num_workers', 0) > 0 and getattr(
                loader, 'persistent_workers', False):
            runner.logger.warning(
                'resume: the train dataloader uses persistent workers, whose '
                'random streams live in the worker processes and are not in '
                'the checkpoint; use persistent_workers=False for a resume '
                'that exactly continues the interrupted run')
        runner.logger.info('resume: restored the torch, numpy and Python '
                           'random states of the checkpoint')

    # -- validation during training ----------------------------------------
    def before_val(self, runner) -> None:
        if self.isolate_val and self._training:
            self._val_state = get_random_state()

    def after_val(self, runner) -> None:
        state, self._val_state = self._val_state, None
        if state is not None:
            set_random_state(state)
