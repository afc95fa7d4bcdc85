# Copyright (c) mmstop contributors. All rights reserved.
from .conv import conv3d_same, run_conv_stack, same_padding
from .normalize import minmax_normalize

__all__ = ['conv3d_same', 'minmax_normalize', 'run_conv_stack', 'same_padding']
