# Copyright (c) mmstop contributors. All rights reserved.
"""Official STOP and SSP checkpoints -> mmstop state dicts (used by
``tools/model_converters/`` and the parity tests)."""
from .ssp_official import convert_official_ssp
from .stop_official import convert_official_stop

__all__ = ['convert_official_ssp', 'convert_official_stop']
