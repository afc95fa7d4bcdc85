# Copyright (c) mmstop contributors. All rights reserved.
from . import hooks  # noqa: F401
from .runners import ResolvedConfigRunner, check_class_counts

__all__ = ['ResolvedConfigRunner', 'check_class_counts']
