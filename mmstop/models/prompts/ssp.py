# Copyright (c) mmstop contributors. All rights reserved.
"""SSP: State Space Prompting (Intra-Frame Gathering, Inter-Frame Spreading).

Zhou et al., "State Space Prompting via Gathering and Spreading
Spatio-Temporal Information for Video Understanding", NeurIPS 2025.
Reproduces what the official code (``models/Ours.py`` +
``VisionMamba.forward_features``) computes; ``docs/ssp.md#ssp-modules``
describes it.

Paper term -> module here -> official name (kept as the attribute / state-dict
name so official checkpoints load with a prefix change only):

* Intra-Frame Gathering (IFG) -> :class:`IntraFrameGathering` ->
  ``inner_prompt`` (``Inner_Prompt``): fc1 -> depthwise "local" conv -> fc2
  gives a token prompt added to every patch token; its
  :class:`FrameSummary` branch (``inner_prompt.inter``, ``InterPrompt``)
  gathers each frame's feature map into one frame vector.
* Inter-Frame Spreading (IFS) -> :meth:`StateSpacePrompting.spread`:
  ``prompt_attentions`` (P x :class:`PromptAttention`, attention across the
  frames of a video), ``dynamic_scales`` (one scalar per layer) and the
  entropy-based frame importance (:class:`FrameImportance`). Its output is
  written into P prompt tokens placed after every frame's patch tokens, from
  where the bidirectional scan spreads it into the neighbouring frames.

:class:`StateSpacePrompting` holds both and performs the per-layer update
(``docs/ssp.md#per-layer-update``);
:class:`mmstop.models.backbones.VideoMamba` calls it before every
block when built with ``ssp=dict(...)``.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmstop.registry import MODELS


def _triple(v: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 3:
        raise ValueError(f'kernel_size must be an int or 3 ints (t, h, w), '
                         f'got {v}')
    return v


class FrameSummary(nn.Module):
    """Gather a frame's feature map into one vector (official ``InterPrompt``).

    A depthwise Conv3d whose kernel covers the whole patch grid (a learned
    per-channel weighted sum over the grid of each frame) followed by a
    linear map to the model width. The module is therefore tied to the patch
    grid it was built for.

    Args:
        in_channels (int): Channels of the gathered feature map (Ca).
        out_channels (int): Output width (the model width C).
        grid_size (tuple[int, int]): Patch grid (h, w) the kernel covers.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 grid_size: Tuple[int, int]) -> None:
        super().__init__()
        self.grid_size = tuple(int(g) for g in grid_size)
        self.convs = nn.Conv3d(
            in_channels,
            in_channels,
            kernel_size=(1, ) + self.grid_size,
            groups=in_channels)
        self.heads = nn.Linear(in_channels, out_channels)
        nn.init.zeros_(self.convs.weight)
        nn.init.zeros_(self.convs.bias)
        nn.init.xavier_normal_(self.heads.weight)
        nn.init.zeros_(self.heads.bias)

    def _check_grid(self, x: Tensor) -> None:
        if tuple(x.shape[2:4]) != self.grid_size:
            raise ValueError(
                f'FrameSummary (SSP inner_prompt.inter) was built for a '
                f'{self.grid_size[0]}x{self.grid_size[1]} patch grid, got '
                f'{x.shape[2]}x{x.shape[3]}: SSP is tied to the img_size it '
                f'was built with')

    def patch_contributions(self, x: Tensor) -> Tensor:
        """What each patch adds to its frame's summary: ``x`` times the
        kernel's weight of that patch, ``[B, T, h * w, Ca]`` for ``x``
        ``[B, T, h, w, Ca]``. Their sum over the patches, plus the conv
        bias, is the summary :meth:`forward` maps with ``heads``.

        Args:
            x (Tensor): Gathered feature map [B, T, h, w, Ca].

        Returns:
            Tensor: The contributions [B, T, h * w, Ca].
        """
        self._check_grid(x)
        b, t, h, w, ca = x.shape
        weight = self.convs.weight.reshape(ca, h * w).t().to(x.dtype)
        return x.reshape(b, t, h * w, ca) * weight

    def forward(self, x: Tensor) -> Tensor:
        """Frame vectors [B, T, C] of ``x`` [B, T, h, w, Ca] (channels last).
        """
        self._check_grid(x)
        b, t, h, w, ca = x.shape
        # Depthwise conv with a full-grid kernel == per-channel weighted sum.
        weight = self.convs.weight.reshape(ca, h * w)
        summary = torch.einsum('btnc,cn->btc', x.reshape(b, t, h * w, ca),
                               weight.to(x.dtype))
        summary = summary + self.convs.bias.to(x.dtype)
        return self.heads(summary)


class IntraFrameGathering(nn.Module):
    """Intra-Frame Gathering (IFG; official ``Inner_Prompt``).

    For the patch tokens X [B, T, N, C] of one layer::

        G = conv(fc1(X))                 # depthwise Conv3d on [B, Ca, T, h, w]
        feature_maps  = fc2(G)           # [B, T, N, C], added to the patches
        frame_vectors = inter(G.detach())  # [B, T, C], FrameSummary

    The frame-vector branch sees ``G`` detached (official), so it trains only
    ``inter``. At init ``conv`` is zero, hence ``G = 0`` and both outputs are
    exactly zero (biases of ``fc2`` and ``inter.heads`` start at zero).

    Args:
        embed_dims (int): Model width C.
        hidden_dims (int): Width Ca of the gathering adapter. Defaults to 384.
        kernel_size (int | tuple[int, int, int]): Kernel (t, h, w) of the
            depthwise "local" conv, zero-padded to keep the size (odd sizes
            only). The official code uses (1, 1, 1), a per-channel scale and
            bias. Defaults to (1, 1, 1).
        grid_size (tuple[int, int]): Patch grid (h, w). Defaults to (14, 14).
    """

    def __init__(
        self,
        embed_dims: int,
        hidden_dims: int = 384,
        kernel_size: Union[int, Sequence[int]] = (1, 1, 1),
        grid_size: Tuple[int, int] = (14, 14)
    ) -> None:
        super().__init__()
        kernel_size = _triple(kernel_size)
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError('IntraFrameGathering: kernel_size must be odd so '
                             f'that the padding keeps the size, got '
                             f'{kernel_size}')
        self.kernel_size = kernel_size
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.conv = nn.Conv3d(
            hidden_dims,
            hidden_dims,
            kernel_size=kernel_size,
            stride=1,
            padding=tuple(k // 2 for k in kernel_size),
            groups=hidden_dims)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.inter = FrameSummary(hidden_dims, embed_dims, grid_size)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self,
                patches: Tensor,
                return_gathered: bool = False) -> Tuple[Tensor, ...]:
        """Gather the patch tokens of every frame.

        Args:
            patches (Tensor): Patch tokens [B, T, N, C], N = h * w row-major.
            return_gathered (bool): Also return ``G``, the input of the
                frame-vector branch [B, T, h, w, Ca]. Defaults to False.

        Returns:
            tuple[Tensor, ...]: ``feature_maps`` [B, T, N, C] (token
            prompt) and ``frame_vectors`` [B, T, C] (and ``G``).
        """
        b, t, n, _ = patches.shape
        h, w = self.inter.grid_size
        if n != h * w:
            raise ValueError(
                f'IntraFrameGathering expects {h}x{w} = {h * w} patch tokens '
                f'per frame, got {n}')
        x = self.fc1(patches).reshape(b, t, h, w, -1)  # channels last
        if self.kernel_size == (1, 1, 1):
            # 1x1x1 depthwise conv == per-channel scale and bias.
            ca = x.shape[-1]
            x = x * self.conv.weight.reshape(ca).to(x.dtype) + \
                self.conv.bias.to(x.dtype)
        else:
            x = self.conv(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        frame_vectors = self.inter(x.detach())
        feature_maps = self.fc2(x.reshape(b, t, n, -1))
        if return_gathered:
            return feature_maps, frame_vectors, x
        return feature_maps, frame_vectors


class PromptAttention(nn.Module):
    """Self-attention across the frames of each video (one per prompt slot).

    ``up_proj(MHA(down_proj(q))) * scale`` with q [B, T, C]; the attention
    runs over the T frames of every video (no mask, no dropout).

    Args:
        embed_dims (int): Model width C.
        attn_dims (int): Attention width. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 8.
    """

    def __init__(self,
                 embed_dims: int,
                 attn_dims: int = 256,
                 num_heads: int = 8) -> None:
        super().__init__()
        self.down_proj = nn.Linear(embed_dims, attn_dims)
        self.attention = nn.MultiheadAttention(attn_dims, num_heads)
        self.up_proj = nn.Linear(attn_dims, embed_dims)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, query: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        x = self.down_proj(query).transpose(0, 1)  # [T, B, A]
        x = self.attention(x, x, x, need_weights=False)[0].transpose(0, 1)
        return self.up_proj(x) * self.scale


class FrameImportance(nn.Module):
    """Entropy-based frame weights of Inter-Frame Spreading (no gradient).

    For the token prompts F [B, T, N, C]::

        p   = softmax(F, over C)
        ent = -sum_C p * log(p + eps)                   # [B, T, N]
        w   = softmax_T(mean_N(1 - ent / max(ent)))     # [B, T]

    Computed in fp32 under ``no_grad`` on the detached input.

    Args:
        entropy_max (str): Where the max of the entropy is taken. ``'batch'``:
            over the whole batch, so a video's weights depend on the other
            videos of the batch (official). ``'video'``: per video.
            Defaults to ``'batch'``.
        eps (float): Added inside the log. Defaults to 1e-10.
    """

    MODES = ('batch', 'video')

    def __init__(self, entropy_max: str = 'batch', eps: float = 1e-10) -> None:
        super().__init__()
        if entropy_max not in self.MODES:
            raise ValueError(f'entropy_max must be one of {self.MODES}, got '
                             f'{entropy_max!r}')
        self.entropy_max = entropy_max
        self.eps = eps

    @torch.no_grad()
    def forward(self, feature_maps: Tensor) -> Tensor:
        """[B, T, N, C] -> frame weights [B, T] (fp32, sum 1 over T)."""
        p = F.softmax(feature_maps.detach().float(), dim=-1)
        ent = -(p * torch.log(p + self.eps)).sum(-1)  # [B, T, N]
        if self.entropy_max == 'batch':
            ent_max = ent.max()
        else:
            ent_max = ent.amax(dim=(1, 2), keepdim=True)
        importance = 1.0 - ent / ent_max
        return F.softmax(importance.mean(-1), dim=1)

    def extra_repr(self) -> str:
        return f'entropy_max={self.entropy_max!r}'


@MODELS.register_module()
class StateSpacePrompting(nn.Module):
    """SSP prompt modules and their per-layer update of the token sequence.

    The backbone lays its tokens out per frame as ``N`` patch tokens followed
    by ``P = num_prompts`` prompt slots (zeros at the input, no position
    embedding) and calls :meth:`forward` before every block ``l`` with
    ``tokens`` = the tensor about to enter block ``l`` (the embeddings for
    ``l = 0``, else the previous block's *mixer output*), CLS excluded::

        feature_maps, frame_vectors = inner_prompt(patches)      # IFG, every l
        if l > 0:                                                 # IFS
            last = patches[:, :, N - 1]            # last patch token per frame
            w = frame_importance(feature_maps)     # [B, T], no gradient
            q = last * (1 + dynamic_scales[l - 1] * w)
            slot i := prompt_attentions[i](q) * frame_vectors     # overwrite
        patches := patches + feature_maps

    Block 0 therefore sees the input slots (zeros); from block 1 on the slots
    hold the prompts written for that block (they replace the previous mixer
    output there). The last patch token keeps its gradient.

    Args:
        embed_dims (int): Model width C.
        num_layers (int): Backbone depth; ``num_layers - 1`` dynamic scales.
        grid_size (tuple[int, int]): Patch grid (h, w) of one frame.
        num_prompts (int): Prompt tokens per frame P (official ``ours_num``).
            Defaults to 3.
        hidden_dims (int): IFG adapter width Ca (``ours_inner_dim``).
            Defaults to 384.
        attn_dims (int): Width of each PromptAttention (``ours_attn_dim``).
            Defaults to 256.
        num_heads (int): Heads of each PromptAttention. Defaults to 8.
        kernel_size (int | tuple[int, int, int]): IFG local conv kernel.
            Defaults to (1, 1, 1) (official).
        entropy_max (str): ``'batch'`` (official) or ``'video'``, see
            :class:`FrameImportance`. Defaults to ``'batch'``.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int,
                 grid_size: Tuple[int, int],
                 num_prompts: int = 3,
                 hidden_dims: int = 384,
                 attn_dims: int = 256,
                 num_heads: int = 8,
                 kernel_size: Union[int, Sequence[int]] = (1, 1, 1),
                 entropy_max: str = 'batch') -> None:
        super().__init__()
        if num_prompts < 0:
            raise ValueError(f'num_prompts must be >= 0, got {num_prompts}')
        self.num_prompts = num_prompts
        self.inner_prompt = IntraFrameGathering(embed_dims, hidden_dims,
                                                kernel_size, grid_size)
        self.dynamic_scales = nn.ParameterList(
            [nn.Parameter(torch.zeros(1)) for _ in range(num_layers - 1)])
        self.prompt_attentions = nn.ModuleList([
            PromptAttention(embed_dims, attn_dims, num_heads)
            for _ in range(num_prompts)
        ])
        self.frame_importance = FrameImportance(entropy_max)

    @property
    def grid_size(self) -> Tuple[int, int]:
        return self.inner_prompt.inter.grid_size

    def spread(self,
               last_tokens: Tensor,
               feature_maps: Tensor,
               frame_vectors: Tensor,
               layer_idx: int,
               weights: Optional[Tensor] = None) -> Tensor:
        """Inter-Frame Spreading: the prompt tokens for block ``layer_idx``.

        Args:
            last_tokens (Tensor): Last patch token of every frame [B, T, C].
            feature_maps (Tensor): IFG token prompts [B, T, N, C] (only used,
                detached, for the frame importance).
            frame_vectors (Tensor): IFG frame vectors [B, T, C].
            layer_idx (int): Block index, >= 1.
            weights (Tensor, optional): The frame importance of
                ``feature_maps`` [B, T], if already computed. Defaults to
                None (computed here).

        Returns:
            Tensor: Prompt tokens [B, T, P, C].
        """
        if weights is None:
            weights = self.frame_importance(feature_maps)
        weights = weights.to(last_tokens.dtype)
        scale = self.dynamic_scales[layer_idx - 1]
        query = last_tokens * (1 + scale * weights.unsqueeze(-1))
        prompts = [pa(query) * frame_vectors for pa in self.prompt_attentions]
        return torch.stack(prompts, dim=2)

    def forward(self,
                tokens: Tensor,
                layer_idx: int,
                return_intermediates: bool = False):
        """Apply the SSP update before block ``layer_idx``.

        Args:
            tokens (Tensor): Tokens without CLS, [B, T, N + P, C].
            layer_idx (int): Index of the block about to run.
            return_intermediates (bool): Also return a dict with
                ``gathering`` [B, T, N], the L2 norm of what each patch
                adds to its frame's vector in IFG
                (:meth:`FrameSummary.patch_contributions`), and, for
                ``layer_idx >= 1`` with prompts, ``frame_weights`` [B, T],
                the entropy-based frame importance of IFS. Defaults to
                False.

        Returns:
            Tensor | tuple: Updated tokens [B, T, N + P, C] (a new tensor),
            and the intermediates.
        """
        n = tokens.shape[2] - self.num_prompts
        patches = tokens[:, :, :n]
        feature_maps, frame_vectors, gathered = self.inner_prompt(
            patches, return_gathered=True)
        out = {}
        if layer_idx > 0 and self.num_prompts > 0:
            weights = self.frame_importance(feature_maps)
            out['frame_weights'] = weights
            slots = self.spread(patches[:, :, n - 1], feature_maps,
                                frame_vectors, layer_idx, weights)
        else:
            slots = tokens[:, :, n:]
        patches = patches + feature_maps
        tokens = torch.cat([patches, slots.to(patches.dtype)], dim=2)
        if not return_intermediates:
            return tokens
        with torch.no_grad():
            out['gathering'] = self.inner_prompt.inter.patch_contributions(
                gathered.detach()).float().norm(dim=-1)
        return tokens, out
