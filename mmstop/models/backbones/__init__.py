# Copyright (c) mmstop contributors. All rights reserved.
from .stop_clip import STOPCLIP

__all__ = ['STOPCLIP']
from .mamba_mixer import BiMambaMixer, MambaBlock, RMSNorm  # noqa: E402
from .videomamba import VideoMamba  # noqa: E402
from .videomamba_checkpoint import (convert_official_state_dict,  # noqa: E402
                                    load_videomamba_checkpoint)
__all__ += ['BiMambaMixer', 'MambaBlock', 'RMSNorm', 'VideoMamba',
            'convert_official_state_dict', 'load_videomamba_checkpoint']
