# Copyright (c) mmstop contributors. All rights reserved.
from .builder import CLIP_ARCHS, build_open_clip
from .checkpoint import load_clip_state_dict, read_clip_checkpoint

__all__ = [
    'CLIP_ARCHS', 'build_open_clip', 'load_clip_state_dict',
    'read_clip_checkpoint'
]
