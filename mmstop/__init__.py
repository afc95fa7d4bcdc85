# Copyright (c) mmstop contributors. All rights reserved.
"""mmstop: STOP and SSP parameter-efficient video models for MMAction2.

Importing this package applies the stack work-arounds of :mod:`mmstop.compat`
(before anything imports ``mmaction.models``) and registers every mmstop
component in MMAction2's registries.
"""
from .compat import apply_patches

apply_patches()

from .version import __version__  # noqa: E402

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__', 'apply_patches']
