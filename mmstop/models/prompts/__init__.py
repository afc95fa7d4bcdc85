# Copyright (c) mmstop contributors. All rights reserved.
from .base import (BaseInterFramePrompt, BaseIntraFramePrompt,
                   InterFramePrompts, IntraFramePromptOutput, STOPPromptModule)
from .dgl import Adapter, DGLPromptGenerator
from .stop_inter import (AttentiveInterFramePrompt, DynamicInterFramePrompt,
                         build_inter_frame_prompt)
from .stop_intra import (PixelIntraFramePrompt, TokenIntraFramePrompt,
                         build_intra_frame_prompt)

__all__ = [
    'Adapter', 'DGLPromptGenerator', 'AttentiveInterFramePrompt',
    'BaseInterFramePrompt', 'BaseIntraFramePrompt', 'DynamicInterFramePrompt',
    'InterFramePrompts', 'IntraFramePromptOutput', 'PixelIntraFramePrompt',
    'STOPPromptModule', 'TokenIntraFramePrompt', 'build_inter_frame_prompt',
    'build_intra_frame_prompt'
]
from .ssp import (
    FrameImportance,
    FrameSummary,  # noqa: E402,E501
    IntraFrameGathering,
    PromptAttention,
    StateSpacePrompting)

__all__ += [
    'FrameImportance', 'FrameSummary', 'IntraFrameGathering',
    'PromptAttention', 'StateSpacePrompting'
]
