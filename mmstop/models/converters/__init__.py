# Copyright (c) mmstop contributors. All rights reserved.
from .stop_official import convert_official_stop

__all__ = ['convert_official_stop']
