# Copyright (c) mmstop contributors. All rights reserved.
from .selective_scan import (IMPL_ENV, IMPLS, resolve_impl, selective_scan,
                             selective_scan_fast, selective_scan_reference)

__all__ = [
    'IMPLS', 'IMPL_ENV', 'resolve_impl', 'selective_scan',
    'selective_scan_fast', 'selective_scan_reference'
]
