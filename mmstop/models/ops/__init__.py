# Copyright (c) mmstop contributors. All rights reserved.
from .selective_scan import (selective_scan, selective_scan_fast,
                             selective_scan_reference)

__all__ = ['selective_scan', 'selective_scan_fast', 'selective_scan_reference']
