# Copyright (c) mmstop contributors. All rights reserved.
from . import backbones, converters, heads, ops, prompts  # noqa: F401
from . import recognizers, similarity  # noqa: F401
from .backbones import CLIPFrameEncoder, STOPCLIP, VideoMamba
from .heads import TextClassifierHead
from .recognizers import STOPRecognizer
from .similarity import STOPSimilarity

__all__ = [
    'CLIPFrameEncoder', 'STOPCLIP', 'STOPRecognizer', 'TextClassifierHead',
    'STOPSimilarity', 'VideoMamba'
]
