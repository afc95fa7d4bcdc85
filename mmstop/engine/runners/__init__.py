# Copyright (c) mmstop contributors. All rights reserved.
from .resolved_config_runner import ResolvedConfigRunner, check_class_counts

__all__ = ['ResolvedConfigRunner', 'check_class_counts']
