# Copyright (c) mmstop contributors. All rights reserved.
"""STOP's transformer blocks and token-slot layout on open_clip's frozen
blocks (``docs/stop.md#token-layout-and-visual-blocks``).

* :func:`global_local_block`: one frozen ViT block with DGL's global/local
  attention: frame tokens attend to their video's global tokens and their
  own frame, global tokens to the whole video; then
  ``x + MLP(LN(x)) + adapter_scale * Adapter(x)``.
* :func:`text_block`: one frozen text block with the adapter.
* :class:`FrameTokenSlots`: the per-frame token layout ``[CLS, local prompts
  (P), extra slots (S), patches (N)]``, the prompts that fill the slots in
  every layer and the attention key masks of padded slots.

The functions take the open_clip block and the adapter as arguments (they
hold no parameters), so the state-dict keys stay those of
:class:`~mmstop.models.backbones.STOPCLIP`.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..prompts.base import InterFramePrompts

KeyPadding = Tuple[torch.Tensor, torch.Tensor]


def residual_mlp(block: nn.Module,
                 x: torch.Tensor,
                 adapter: Optional[nn.Module] = None,
                 adapter_scale: float = 0.) -> torch.Tensor:
    """``x + MLP(LN(x)) + adapter_scale * adapter(x)``: the adapter reads the
    same (un-normalised) stream as the MLP.

    Args:
        block (nn.Module): open_clip ``ResidualAttentionBlock``.
        x (torch.Tensor): Tokens ``[..., D]`` after the attention residual.
        adapter (nn.Module, optional): The block's adapter. Defaults to None.
        adapter_scale (float): Its scale. Defaults to 0.

    Returns:
        torch.Tensor: The block output.
    """
    out = x + block.ls_2(block.mlp(block.ln_2(x)))
    if adapter is not None:
        out = out + adapter_scale * adapter(x)
    return out


def global_local_block(block: nn.Module,
                       g: torch.Tensor,
                       f: torch.Tensor,
                       key_padding: Optional[KeyPadding] = None,
                       adapter: Optional[nn.Module] = None,
                       adapter_scale: float = 0.
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One frozen ViT block with DGL's global/local attention.

    Frame tokens attend to ``[their video's global tokens; their frame]``;
    global tokens attend to ``[global tokens; all frame tokens of the
    video]``; both with the block's attention, then :func:`residual_mlp`.

    Args:
        block (nn.Module): open_clip ``ResidualAttentionBlock``.
        g (torch.Tensor): Global tokens ``[B, G, D]``.
        f (torch.Tensor): Frame tokens ``[B, T, S, D]``.
        key_padding (tuple, optional): Boolean key masks (True = ignored) of
            the frame and the global attention
            (:attr:`FrameTokenSlots.key_padding`). Defaults to None.
        adapter (nn.Module, optional): The block's adapter. Defaults to None.
        adapter_scale (float): Its scale. Defaults to 0.

    Returns:
        tuple: The new global and frame tokens.
    """
    B, T, S, D = f.shape
    G = g.shape[1]
    g_ln = block.ln_1(g)
    f_ln = block.ln_1(f)
    q_f = f_ln.reshape(B * T, S, D)
    kv_f = torch.cat(
        [g_ln[:, None].expand(B, T, G, D).reshape(B * T, G, D), q_f], dim=1)
    mask_f, mask_g = (None, None) if key_padding is None else key_padding
    out_f = block.attn(
        q_f, kv_f, kv_f, need_weights=False, key_padding_mask=mask_f)[0]
    kv_g = torch.cat([g_ln, f_ln.reshape(B, T * S, D)], dim=1)
    out_g = block.attn(
        g_ln, kv_g, kv_g, need_weights=False, key_padding_mask=mask_g)[0]
    g = g + block.ls_1(out_g)
    f = f + block.ls_1(out_f.reshape(B, T, S, D))
    return (residual_mlp(block, g, adapter, adapter_scale),
            residual_mlp(block, f, adapter, adapter_scale))


def text_block(block: nn.Module,
               x: torch.Tensor,
               attn_mask: torch.Tensor,
               adapter: Optional[nn.Module] = None,
               adapter_scale: float = 0.) -> torch.Tensor:
    """One frozen text block (masked self-attention) with the adapter.

    Args:
        block (nn.Module): open_clip ``ResidualAttentionBlock``.
        x (torch.Tensor): Tokens ``[B, L, D]``.
        attn_mask (torch.Tensor): Additive attention mask ``[L, L]``.
        adapter (nn.Module, optional): The block's adapter. Defaults to None.
        adapter_scale (float): Its scale. Defaults to 0.

    Returns:
        torch.Tensor: ``[B, L, D]``.
    """
    x_ln = block.ln_1(x)
    x = x + block.ls_1(
        block.attn(x_ln, x_ln, x_ln, need_weights=False,
                   attn_mask=attn_mask)[0])
    return residual_mlp(block, x, adapter, adapter_scale)


class FrameTokenSlots:
    """The prompt slots of every frame, in every layer.

    Each frame's tokens are ``[CLS, local prompts (P), extra slots (S),
    patches (N)]``. Before every layer the slots are *replaced* by that
    layer's prompts (:meth:`insert`); the local prompts are the DGL
    generator's, plus the inter-frame prompt's ``local_offset``, and the
    ``S`` extra slots hold its ``extra`` tokens (the same in every layer).
    Padded extra slots are masked as attention keys: :attr:`key_padding`
    holds the boolean key masks (True = ignored) of the frame attention
    ``[B*T, G+F]`` and the global attention ``[B, G+T*F]`` (``F = 1+P+S+N``)
    for :func:`global_local_block`, or None when no slot is padding.

    Args:
        visual_prompts (torch.Tensor): DGL local prompts ``[layers, P, D]``
            (shared by all frames) or ``[layers, T*P, D]`` (per frame; rows
            ``P*t ... P*t+P-1`` belong to frame ``t``).
        num_videos (int): ``B``.
        num_frames (int): ``T``.
        num_local_prompts (int): ``P``.
        num_global_prompts (int): Global tokens ``G`` per video (the keys in
            front of the frame tokens).
        num_patches (int): Patch tokens ``N`` per frame.
        inter (InterFramePrompts, optional): The inter-frame prompt's
            output. Defaults to None (no inter-frame prompt).
    """

    def __init__(self,
                 visual_prompts: torch.Tensor,
                 num_videos: int,
                 num_frames: int,
                 num_local_prompts: int,
                 num_global_prompts: int,
                 num_patches: int,
                 inter: Optional[InterFramePrompts] = None) -> None:
        B, T, P = num_videos, num_frames, num_local_prompts
        n_layers, D = visual_prompts.shape[0], visual_prompts.shape[-1]
        # local prompts per layer: [layers, 1|B, T, P, D]
        local = visual_prompts.reshape(n_layers, 1, -1, P, D)
        if local.shape[2] == 1:
            local = local.expand(n_layers, 1, T, P, D)
        elif local.shape[2] != T:
            raise ValueError(
                f'visual prompts cover {local.shape[2]} frames, video has {T}')
        extra = padding = None
        if inter is not None:
            if inter.local_offset is not None:
                local = local + inter.local_offset[None]
            extra, padding = inter.extra, inter.extra_padding
        self.local = local.expand(n_layers, B, T, P, D)
        self.extra = extra
        self.num_slots = P + (0 if extra is None else extra.shape[2])
        self.key_padding: Optional[KeyPadding] = None
        if padding is not None:
            frame_pad = torch.cat([
                padding.new_zeros(B, T, 1 + P), padding,
                padding.new_zeros(B, T, num_patches)
            ],
                                  dim=2)
            F, G = frame_pad.shape[2], num_global_prompts
            glob = frame_pad.new_zeros(B, G)
            self.key_padding = (torch.cat(
                [glob[:, None].expand(B, T, G), frame_pad],
                dim=2).reshape(B * T, G + F),
                                torch.cat([glob,
                                           frame_pad.reshape(B, T * F)],
                                          dim=1))

    def insert(self, layer: int, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, T, 1+N, D]`` frame tokens -> ``[B, T, 1+P+S+N, D]`` with the
        slots of ``layer``."""
        extra = [] if self.extra is None else [self.extra]
        return torch.cat(
            [tokens[:, :, :1], self.local[layer], *extra, tokens[:, :, 1:]],
            dim=2)

    def remove(self, f: torch.Tensor) -> torch.Tensor:
        """``[B, T, 1+P+S+N, D]`` -> the frame tokens ``[B, T, 1+N, D]``."""
        return torch.cat([f[:, :, :1], f[:, :, 1 + self.num_slots:]], dim=2)
