# Copyright (c) mmstop contributors. All rights reserved.
from . import transforms  # noqa: F401
