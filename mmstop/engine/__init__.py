# Copyright (c) mmstop contributors. All rights reserved.
from . import hooks  # noqa: F401
