# Copyright (c) mmstop contributors. All rights reserved.
from .clip_frame_encoder import CLIPFrameEncoder
from .stop_clip import STOPCLIP

__all__ = ['CLIPFrameEncoder', 'STOPCLIP']
from .mamba_mixer import BiMambaMixer, MambaBlock, RMSNorm  # noqa: E402
from .videomamba import VideoMamba, load_videomamba_checkpoint  # noqa: E402

__all__ += [
    'BiMambaMixer', 'MambaBlock', 'RMSNorm', 'VideoMamba',
    'load_videomamba_checkpoint'
]
