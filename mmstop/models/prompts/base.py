# Copyright (c) mmstop contributors. All rights reserved.
"""The interface between :class:`~mmstop.models.backbones.STOPCLIP` and its
prompt modules.

The backbone knows nothing about the concrete prompt classes; it calls these
hooks at fixed points of the video forward
(``docs/stop.md#the-official-forward``), for frames ``[B, T, 3, H, W]``:

1. :meth:`STOPPromptModule.check_batch` before anything runs;
2. :meth:`BaseIntraFramePrompt.prompt_pixels` on the frames, before the
   frozen patch embedding (pixel-space prompts, the official STOP code);
3. :meth:`BaseIntraFramePrompt.prompt_tokens` on the frame tokens
   ``[B, T, 1+N, D]`` (CLS first, prompt slots removed) at the input of every
   layer for which :meth:`BaseIntraFramePrompt.prompts_layer` is true
   (token-space prompts, the paper);
4. :meth:`BaseInterFramePrompt.frame_prompts` once, on the layer-0 frame
   tokens (after steps 2-3) and the region mask of the intra prompt: it
   returns what the inter prompt adds to each frame, as
   :class:`InterFramePrompts`: an offset added to the local prompts of every
   layer, and/or extra token slots per frame with an attention key mask.

Every hook returns its outputs and a dict of named intermediate tensors; the
modules keep no state between calls. A new prompt variant subclasses one of
these bases, is registered in ``MODELS`` and is selected in a config with
``intra_prompt=dict(type=..., ...)`` (or a ``mode`` of
:func:`~.stop_intra.build_intra_frame_prompt` /
:func:`~.stop_inter.build_inter_frame_prompt`); the backbone does not change.
"""
from typing import Dict, NamedTuple, Optional

import torch
import torch.nn as nn


class IntraFramePromptOutput(NamedTuple):
    """What an intra-frame hook returns.

    Attributes:
        x (torch.Tensor): The prompted frames ``[B, T, 3, H, W]``
            (:meth:`BaseIntraFramePrompt.prompt_pixels`) or frame tokens
            ``[B, T, 1+N, D]`` (:meth:`BaseIntraFramePrompt.prompt_tokens`).
        region_mask (torch.Tensor, optional): Boolean region mask with ``N``
            cells per frame (``[B, T, N]`` or ``[B, T, Gh, Gw]``), passed to
            the inter-frame prompt; None if the hook selects no regions.
        intermediates (dict): Named tensors for inspection. The backbone
            returns those of :meth:`~BaseIntraFramePrompt.prompt_pixels`
            under their names and stacks those of
            :meth:`~BaseIntraFramePrompt.prompt_tokens` over the prompted
            layers as ``<name>_layers``.
    """
    x: torch.Tensor
    region_mask: Optional[torch.Tensor]
    intermediates: Dict[str, torch.Tensor]


class InterFramePrompts(NamedTuple):
    """What :meth:`BaseInterFramePrompt.frame_prompts` returns.

    Each frame's tokens are ``[CLS, local prompts (P), extra slots (S),
    patches (N)]`` in every layer; the local prompts come from the DGL prompt
    generator.

    Attributes:
        local_offset (torch.Tensor, optional): ``[B, T, P, D]`` added to the
            local prompts of every layer (the official inter prompt).
        extra (torch.Tensor, optional): ``[B, T, S, D]`` tokens placed in
            ``S`` extra slots after the local prompts of every layer (the
            paper's dynamic inter prompt).
        extra_padding (torch.Tensor, optional): Boolean ``[B, T, S]``, True
            for a slot that holds no prompt: it is masked as an attention key
            of the frame and global attention, so it never influences a real
            token. None: every extra slot is real.
        intermediates (dict): Named tensors for inspection.
    """
    local_offset: Optional[torch.Tensor]
    extra: Optional[torch.Tensor]
    extra_padding: Optional[torch.Tensor]
    intermediates: Dict[str, torch.Tensor]


class STOPPromptModule(nn.Module):
    """Hooks shared by intra- and inter-frame prompts."""

    @property
    def batch_dependent(self) -> bool:
        """Whether a video's prompts depend on the other videos of its batch
        (then evaluation needs a fixed batch size). Defaults to False."""
        return False

    def check_batch(self, num_videos: int, num_frames: int) -> None:
        """Reject a batch the module cannot prompt, before the forward.

        Args:
            num_videos (int): Videos in the batch ``B``.
            num_frames (int): Frames per video ``T``.

        Raises:
            ValueError: If the batch cannot be prompted. The default accepts
                every batch.
        """


class BaseIntraFramePrompt(STOPPromptModule):
    """Interface of STOP's intra-frame (spatial) prompts.

    Subclasses override :meth:`prompt_pixels` (a prompt in pixel space,
    before the patch embedding) and/or :meth:`prompts_layer` and
    :meth:`prompt_tokens` (a prompt on the frame tokens at the input of some
    layers). The defaults leave frames and tokens unchanged.
    """

    def prompt_pixels(self, frames: torch.Tensor) -> IntraFramePromptOutput:
        """Prompt the normalised frames ``[B, T, 3, H, W]``.

        Args:
            frames (torch.Tensor): The frames.

        Returns:
            IntraFramePromptOutput: The frames, unchanged by default.
        """
        return IntraFramePromptOutput(frames, None, {})

    def prompts_layer(self, layer: int) -> bool:
        """Whether :meth:`prompt_tokens` acts at the input of ``layer``.

        Args:
            layer (int): Layer index.

        Returns:
            bool: False by default.
        """
        return False

    def prompt_tokens(self, tokens: torch.Tensor, layer: int, norm: nn.Module,
                      attn: nn.MultiheadAttention) -> IntraFramePromptOutput:
        """Prompt the frame tokens at the input of ``layer``.

        Args:
            tokens (torch.Tensor): Frame tokens ``[B, T, 1+N, D]``, CLS first,
                without prompt slots.
            layer (int): Layer index (one for which :meth:`prompts_layer` is
                true).
            norm (nn.Module): The layer's frozen pre-attention norm.
            attn (nn.MultiheadAttention): The layer's frozen attention.

        Returns:
            IntraFramePromptOutput: The tokens, unchanged by default.
        """
        return IntraFramePromptOutput(tokens, None, {})


class BaseInterFramePrompt(STOPPromptModule):
    """Interface of STOP's inter-frame (temporal) prompts.

    Subclasses implement :meth:`frame_prompts`.
    """

    def frame_prompts(self,
                      tokens: torch.Tensor,
                      region_mask: Optional[torch.Tensor] = None
                      ) -> InterFramePrompts:
        """Prompts of every frame, from the layer-0 frame tokens.

        Args:
            tokens (torch.Tensor): Layer-0 frame tokens ``[B, T, 1+N, D]``
                (CLS first, after the intra-frame prompt).
            region_mask (torch.Tensor, optional): The intra-frame prompt's
                region mask (``N`` cells per frame), None without one.

        Returns:
            InterFramePrompts: The local-prompt offset and/or extra slots.
        """
        raise NotImplementedError(
            f'{type(self).__name__} must implement frame_prompts()')
