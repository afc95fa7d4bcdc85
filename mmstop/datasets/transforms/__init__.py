# Copyright (c) mmstop contributors. All rights reserved.
from .multi_view import LongSideCrops, SegmentViewSampleFrames
from .repeated_augment import RepeatedAugment
from .segment_sampling import SegmentSampleFrames, official_segment_indices
from .text_tokenize import TokenizeText
from .video_text_packing import PackVideoTextInputs

__all__ = [
    'LongSideCrops', 'PackVideoTextInputs', 'RepeatedAugment',
    'SegmentSampleFrames', 'SegmentViewSampleFrames', 'TokenizeText',
    'official_segment_indices'
]
