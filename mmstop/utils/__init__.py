# Copyright (c) mmstop contributors. All rights reserved.
from .config import is_variable_value, parse_config, resolve_config

__all__ = ['is_variable_value', 'parse_config', 'resolve_config']
