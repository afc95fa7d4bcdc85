# Copyright (c) mmstop contributors. All rights reserved.
from .conv import conv3d_same

__all__ = ['conv3d_same']
