# Copyright (c) mmstop contributors. All rights reserved.
from . import metrics  # noqa: F401
