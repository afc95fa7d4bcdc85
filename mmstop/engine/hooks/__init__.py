# Copyright (c) mmstop contributors. All rights reserved.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .bad_video_hook import BadVideoHook
from .non_finite_check_hook import NonFiniteCheckHook, NonFiniteError
from .random_state_hook import (RandomStateHook, get_random_state,
                                set_random_state)
from .strict_load_hook import StrictLoadHook

__all__ = [
    'AtomicCheckpointHook', 'BadVideoHook', 'NonFiniteCheckHook',
    'NonFiniteError', 'RandomStateHook', 'StrictLoadHook', 'get_random_state',
    'set_random_state'
]
