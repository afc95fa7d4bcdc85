# Copyright (c) mmstop contributors. All rights reserved.
from .segment_sampling import (SegmentSampleFrames,  # noqa: F401
                               official_segment_indices)
from .text_tokenize import TokenizeText  # noqa: F401
from .video_text_packing import PackVideoTextInputs  # noqa: F401
