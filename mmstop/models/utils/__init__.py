# Copyright (c) mmstop contributors. All rights reserved.
from .conv import conv3d_same, run_conv_stack, same_padding
from .normalize import minmax_normalize
from .recording import operators_recorded

__all__ = [
    'conv3d_same', 'minmax_normalize', 'operators_recorded', 'run_conv_stack',
    'same_padding'
]
