# Copyright (c) mmstop contributors. All rights reserved.
"""STOP inter-frame temporal prompting.

Two variants, selected by ``mode`` in the backbone config (see
:func:`build_inter_frame_prompt`):

* ``'official'`` (:class:`AttentiveInterFramePrompt`): what the released STOP
  code computes (spec ``stop.md`` section 2.4). From the layer-0 patch tokens
  of the whole video, a joint space-time attention and 3D convolutions
  produce a fixed ``num_prompts`` tokens per frame, scaled by ``1 + w_t``
  where ``w_t`` is a min-max normalised frame-variation score. The official
  code normalises over *every frame of the batch* (``normalize='batch'``),
  which couples the videos of a batch and divides 0 by 0 when the batch holds
  a single frame; ``normalize='video'`` normalises per video and maps
  constant scores to 0 instead of NaN.
* ``'paper'`` (:class:`DynamicInterFramePrompt`): equations 8-12 of the
  paper: frame differences, a ``beta``-weighted variation score, and a
  dynamic number of tokens per frame gap ``ceil(eta * W)`` (clamped to
  ``max_prompts``), one output head per count, padded with attention masks.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from mmstop.registry import MODELS
from .builder import build_mode_module
from ..utils import conv3d_same
from .stop_intra import _run_conv_stack, _same_padding


def minmax_normalize(scores: torch.Tensor, mode: str) -> torch.Tensor:
    """Min-max normalise frame scores ``[B, T]``.

    Args:
        scores (torch.Tensor): Raw frame scores ``[B, T]``.
        mode (str): ``'batch'`` (official: min and max over all ``B*T``
            entries; 0/0 = NaN when they are equal) or ``'video'`` (per row;
            rows whose scores are all equal map to 0).

    Returns:
        torch.Tensor: Normalised scores ``[B, T]``.
    """
    if mode == 'batch':
        return (scores - scores.min()) / (scores.max() - scores.min())
    if mode == 'video':
        low = scores.min(dim=1, keepdim=True)[0]
        span = scores.max(dim=1, keepdim=True)[0] - low
        safe = torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, (scores - low) / safe,
                           torch.zeros_like(scores))
    raise ValueError(f"normalize must be 'batch' or 'video', got {mode!r}")


@MODELS.register_module()
class AttentiveInterFramePrompt(nn.Module):
    """Official STOP inter-frame prompt (``mode='official'``).

    Input: the layer-0 tokens ``h0`` of every frame (``[B, T, 1+N, D]``, CLS
    first) and, optionally, the intra-frame region mask ``R`` (``[B, T, G, G]``,
    ``G*G = N``).

    1. ``Z = MHA(z, z, z)`` over each video's ``T*N`` patch tokens (no
       residual, no norm), viewed as a one-channel volume ``[B, 1, T, N, D]``.
    2. Frame score ``w_raw[b, t] = mean_{n, d} V * (1 + R)`` with
       ``V = Conv3d(1->1)(Z)`` (``variation_scorer``), then min-max
       normalisation (``normalize``).
    3. Prompts ``Q = Conv3d(1->c) -> PReLU -> Conv3d(c->1)`` on ``Z``, a
       ``N -> mlp_channels -> PReLU -> num_prompts`` MLP over the token axis,
       ``Q * (1 + w)``, times ``prompt_scale``.

    Args:
        embed_dims (int): Token width ``D``.
        num_patches (int): Patch tokens per frame ``N``.
        num_prompts (int): Prompt tokens per frame. Defaults to 4.
        num_heads (int): Heads of the space-time attention. Defaults to 12.
        hidden_channels (int): Channels between the two prompt convolutions.
            Defaults to 9.
        mlp_channels (int): Hidden width of the token MLP. Defaults to 16.
        kernel_size (Sequence[int]): Prompt-conv kernel over (frame, token,
            channel). Defaults to ``(3, 15, 25)``.
        scorer_kernel_size (Sequence[int]): Variation-scorer kernel. Defaults
            to ``(5, 11, 11)``.
        normalize (str): ``'batch'`` (official) or ``'video'``, see
            :func:`minmax_normalize`. Defaults to ``'batch'``.
        prompt_scale (float): Output scale. Defaults to 0.05.
    """

    def __init__(self,
                 embed_dims: int,
                 num_patches: int,
                 num_prompts: int = 4,
                 num_heads: int = 12,
                 hidden_channels: int = 9,
                 mlp_channels: int = 16,
                 kernel_size: Sequence[int] = (3, 15, 25),
                 scorer_kernel_size: Sequence[int] = (5, 11, 11),
                 normalize: str = 'batch',
                 prompt_scale: float = 0.05) -> None:
        super().__init__()
        if normalize not in ('batch', 'video'):
            raise ValueError(
                f"normalize must be 'batch' or 'video', got {normalize!r}")
        self.embed_dims = embed_dims
        self.num_patches = num_patches
        self.num_prompts = num_prompts
        self.normalize = normalize
        self.prompt_scale = prompt_scale
        self.attention = nn.MultiheadAttention(
            embed_dims, num_heads, batch_first=True)
        pad = _same_padding(kernel_size)
        self.conv = nn.Sequential(
            nn.Conv3d(1, hidden_channels, kernel_size, padding=pad),
            nn.PReLU(),
            nn.Conv3d(hidden_channels, 1, kernel_size, padding=pad),
        )
        self.mlp = nn.Sequential(
            nn.Linear(num_patches, mlp_channels),
            nn.PReLU(),
            nn.Linear(mlp_channels, num_prompts),
        )
        self.variation_scorer = nn.Conv3d(
            1, 1, scorer_kernel_size,
            padding=_same_padding(scorer_kernel_size))

    def forward(self,
                tokens: torch.Tensor,
                region_mask: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """Compute the inter-frame prompts.

        Args:
            tokens (torch.Tensor): Layer-0 tokens ``[B, T, 1+N, D]``.
            region_mask (torch.Tensor, optional): Intra-frame region mask
                ``[B, T, G, G]`` with ``G*G = N``; ``None`` means no region
                weighting (intra-frame prompting disabled).

        Returns:
            dict: ``prompts`` ``[B, T, num_prompts, D]`` (already scaled),
            ``attn`` (the attention output ``[B, T, N, D]``), ``w_raw`` and
            ``w`` (frame scores ``[B, T]`` before/after normalisation).
        """
        B, T, L, D = tokens.shape
        if L != self.num_patches + 1 or D != self.embed_dims:
            raise ValueError(
                f'{type(self).__name__} expects tokens [B, T, '
                f'{self.num_patches + 1}, {self.embed_dims}], got '
                f'{list(tokens.shape)}')
        z = tokens[:, :, 1:].reshape(B, T * self.num_patches, D)
        z = self.attention(z, z, z, need_weights=False)[0]
        attn = z.reshape(B, T, self.num_patches, D)
        volume = attn.unsqueeze(1)  # [B, 1, T, N, D]

        scorer = self.variation_scorer
        v = conv3d_same(volume, scorer.weight, scorer.bias,
                        scorer.padding).squeeze(1)
        if region_mask is not None:
            r = region_mask.reshape(B, T, -1, 1).to(v.dtype)
            if r.shape[2] != self.num_patches:
                raise ValueError(
                    f'region mask with {r.shape[2]} cells does not match '
                    f'{self.num_patches} patches')
            v = v + v * r
        w_raw = v.mean(dim=(2, 3))
        w = minmax_normalize(w_raw, self.normalize)

        q = _run_conv_stack(self.conv, volume).squeeze(1)  # [B, T, N, D]
        q = self.mlp(q.transpose(2, 3)).transpose(2, 3)  # [B, T, P, D]
        q = q + q * w[:, :, None, None]
        return dict(
            prompts=q * self.prompt_scale, attn=attn, w_raw=w_raw, w=w)


def build_inter_frame_prompt(cfg: Optional[dict], **defaults) -> Optional[nn.Module]:
    """Build the inter prompt from ``dict(mode=..., **options)``.

    ``mode='official'`` builds :class:`AttentiveInterFramePrompt`, ``'paper'`` builds
    :class:`DynamicInterFramePrompt`; ``None`` disables the mechanism. ``defaults``
    (sizes known to the backbone) fill the options the config does not set.
    """
    return build_mode_module(
        'inter_prompt', cfg, {'official': 'AttentiveInterFramePrompt', 'paper': 'DynamicInterFramePrompt'}, **defaults)
