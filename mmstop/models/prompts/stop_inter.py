# Copyright (c) mmstop contributors. All rights reserved.
"""STOP inter-frame temporal prompting.

Two variants, selected by ``mode`` in the backbone config (see
:func:`build_inter_frame_prompt`):

* ``'official'`` (:class:`AttentiveInterFramePrompt`): what the released STOP
  code computes (``docs/stop.md#inter-frame-prompts-official-code``). From
  the layer-0 patch tokens
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
  ``[min_prompts, max_prompts]``), one output head per count, padded to
  ``max_prompts`` slots per frame with a padding mask.

Both implement :class:`~.base.BaseInterFramePrompt`, the interface through
which :class:`~mmstop.models.backbones.STOPCLIP` calls them.
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from mmstop.registry import MODELS
from ..utils import conv3d_same, minmax_normalize, run_conv_stack, same_padding
from .base import BaseInterFramePrompt, InterFramePrompts
from .builder import build_mode_module


def normalize_frame_scores(scores: torch.Tensor, mode: str) -> torch.Tensor:
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
        return minmax_normalize(scores, dim=None, constant_to_zero=False)
    if mode == 'video':
        return minmax_normalize(scores, dim=1)
    raise ValueError(f"normalize must be 'batch' or 'video', got {mode!r}")


@MODELS.register_module()
class AttentiveInterFramePrompt(BaseInterFramePrompt):
    """Official STOP inter-frame prompt (``mode='official'``).

    Input: the layer-0 tokens ``h0`` of every frame (``[B, T, 1+N, D]``, CLS
    first) and, optionally, the intra-frame region mask ``R``
    (``[B, T, G, G]``, ``G*G = N``).

    1. ``Z = MHA(z, z, z)`` over each video's ``T*N`` patch tokens (no
       residual, no norm), viewed as a one-channel volume ``[B, 1, T, N, D]``.
    2. Frame score ``w_raw[b, t] = mean_{n, d} V * (1 + R)`` with
       ``V = Conv3d(1->1)(Z)`` (``variation_scorer``), then min-max
       normalisation (``normalize``).
    3. Prompts ``Q = Conv3d(1->c) -> PReLU -> Conv3d(c->1)`` on ``Z``, a
       ``N -> mlp_channels -> PReLU -> num_prompts`` MLP over the token axis,
       ``Q * (1 + w)``, times ``prompt_scale``.

    In :class:`~mmstop.models.backbones.STOPCLIP` (:meth:`frame_prompts`)
    the prompts are added to the DGL local prompts of every layer.

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
            :func:`normalize_frame_scores`. Defaults to ``'batch'``.
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
        pad = same_padding(kernel_size)
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
            1, 1, scorer_kernel_size, padding=same_padding(scorer_kernel_size))

    @property
    def batch_dependent(self) -> bool:
        """True with ``normalize='batch'``: the frame weights are normalised
        over every frame of the batch."""
        return self.normalize == 'batch'

    def check_batch(self, num_videos: int, num_frames: int) -> None:
        """Reject a batch of one frame in total with ``normalize='batch'``
        (``docs/stop.md#batch-coupling-and-single-frame-batches``).

        Args:
            num_videos (int): Videos in the batch ``B``.
            num_frames (int): Frames per video ``T``.

        Raises:
            ValueError: If ``B * T == 1`` and ``normalize='batch'``: the
                min-max normalisation would be 0/0 and every feature NaN.
        """
        if num_videos * num_frames == 1 and self.batch_dependent:
            raise ValueError(
                'official inter-frame prompts (inter_prompt.normalize='
                "'batch') min-max normalise the frame scores over all "
                'batch_size x num_frames frames of a batch, and this batch '
                'holds 1 video of 1 frame: 0/0 gives NaN features. Set '
                "inter_prompt=dict(normalize='video') (per-video "
                'normalisation, defined for any batch), or use batches with '
                'at least 2 frames in total (batch_size * num_frames >= 2)')

    def frame_prompts(self,
                      tokens: torch.Tensor,
                      region_mask: Optional[torch.Tensor] = None
                      ) -> InterFramePrompts:
        """The backbone hook: :meth:`forward`, added to the local prompts.

        Args:
            tokens (torch.Tensor): Layer-0 tokens ``[B, T, 1+N, D]``.
            region_mask (torch.Tensor, optional): Intra-frame region mask.

        Returns:
            InterFramePrompts: ``local_offset`` the prompts
            ``[B, T, num_prompts, D]``; intermediates ``w_raw``, ``w``,
            ``inter_prompt`` (the prompts) and ``inter_attn`` (the
            space-time attention output).
        """
        out = self(tokens, region_mask)
        return InterFramePrompts(
            local_offset=out['prompts'],
            extra=None,
            extra_padding=None,
            intermediates=dict(
                w_raw=out['w_raw'],
                w=out['w'],
                inter_prompt=out['prompts'],
                inter_attn=out['attn']))

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
        w = normalize_frame_scores(w_raw, self.normalize)

        q = run_conv_stack(self.conv, volume).squeeze(1)  # [B, T, N, D]
        q = self.mlp(q.transpose(2, 3)).transpose(2, 3)  # [B, T, P, D]
        q = q + q * w[:, :, None, None]
        return dict(prompts=q * self.prompt_scale, attn=attn, w_raw=w_raw, w=w)


@MODELS.register_module()
class DynamicInterFramePrompt(BaseInterFramePrompt):
    """The paper's inter-frame temporal prompt (``mode='paper'``).

    Equations 8-12 of STOP (``docs/stop.md#the-papers-method``,
    ``docs/stop.md#paper-mode``), from the layer-0
    (intra-prompted) tokens ``h^s`` ``[B, T, 1+N, D]`` and the intra region
    mask ``r``:

    * frame differences ``dh_i = h^s_i - h^s_{i-1}`` of the patch tokens
      (eq. 8). ``first_frame='none'``: the ``T-1`` gaps; the tokens of gap
      ``i`` (between frames ``i-1`` and ``i``) belong to frame ``i`` and frame
      0 gets none. ``first_frame='zero'``: ``dh_0 = 0`` is prepended, so every
      frame gets a group (frame 0's from a zero difference);
    * ``h~ = N^t(dh)``, a trainable ``Conv3d(1->1)`` over the (gap, patch,
      channel) volume (eq. 9), and
      ``W_i = 1/(N*D) sum_j (1 + beta*r_ij) sum_k h~_ijk^2`` (eq. 10), with
      ``r`` of the later frame ``i``; ``variation_norm`` optionally
      normalises ``W`` (unbounded in the paper);
    * counts ``n_i = ceil(eta * W_i)`` clamped to
      ``[min_prompts, max_prompts]`` (eq. 11);
    * prompter ``P^t`` (eq. 12, Figure 2c): a multi-head attention over all
      difference tokens of the video (output only, no residual, as in the
      official attention), ``Conv3d -> ReLU -> Conv3d`` on the (gap, patch,
      channel) volume, then the linear head *selected by the count*: one
      ``Linear(N -> n)`` per possible count ``n`` mixing the patch axis into
      ``n`` tokens, dropout, ``prompt_scale``.

    Counts differ between frames, so the prompts come padded to
    ``max_prompts`` slots per frame with a ``padding_mask`` (True = padded
    slot; padded values are 0). The backbone inserts the slots into each
    frame's attention group and masks the padded ones as keys, so they never
    influence any other token (:meth:`frame_prompts`).

    ``n`` is an integer, so ``N^t`` would get no gradient from the count
    alone. ``variation_grad='straight_through'`` multiplies the prompts by
    ``1 + (W - stopgrad(W))``: exactly 1 in the forward pass, but the
    gradient of the prompts' effect reaches ``N^t`` as if they were scaled by
    ``1 + W`` (the official code's ``(1 + w)`` modulation, here without
    changing the values).

    Args:
        embed_dims (int): Token width ``D``.
        num_patches (int): Patch tokens per frame ``N``.
        num_heads (int): Heads of the prompter's attention. Defaults to 12.
        beta (float): Extra weight of region tokens in ``W``. Defaults to 4.
        eta (float): Count scale. Defaults to 12.
        min_prompts (int): Smallest count (of every frame that has a group).
            Defaults to 1.
        max_prompts (int, optional): Largest count, the number of slots per
            frame. Defaults to ``ceil(eta)``.
        first_frame (str): ``'none'`` or ``'zero'`` (see above). Defaults to
            ``'none'``.
        variation_norm (str): ``'none'`` (the paper) or ``'video'`` (min-max
            over each video's groups; constant videos map to 0). Defaults to
            ``'none'``.
        variation_grad (str): ``'straight_through'`` or ``'none'``. Defaults
            to ``'straight_through'``.
        hidden_channels (int): Channels between the prompter convolutions.
            Defaults to 8.
        kernel_size (Sequence[int]): Prompter conv kernel (gap, patch,
            channel). Defaults to ``(3, 3, 3)``.
        scorer_kernel_size (Sequence[int]): Kernel of ``N^t``. Defaults to
            ``(3, 3, 3)``.
        dropout (float): Output dropout. Defaults to 0.1.
        prompt_scale (float): Factor on the prompts (the paper has none).
            Defaults to 1.0.
    """

    def __init__(self,
                 embed_dims: int,
                 num_patches: int,
                 num_heads: int = 12,
                 beta: float = 4.,
                 eta: float = 12.,
                 min_prompts: int = 1,
                 max_prompts: Optional[int] = None,
                 first_frame: str = 'none',
                 variation_norm: str = 'none',
                 variation_grad: str = 'straight_through',
                 hidden_channels: int = 8,
                 kernel_size: Sequence[int] = (3, 3, 3),
                 scorer_kernel_size: Sequence[int] = (3, 3, 3),
                 dropout: float = 0.1,
                 prompt_scale: float = 1.0) -> None:
        super().__init__()
        if max_prompts is None:
            max_prompts = int(math.ceil(eta))
        if not 0 <= min_prompts <= max_prompts or max_prompts < 1:
            raise ValueError(
                'inter_prompt needs 0 <= min_prompts <= max_prompts and '
                f'max_prompts >= 1, got min_prompts={min_prompts}, '
                f'max_prompts={max_prompts}')
        if first_frame not in ('none', 'zero'):
            raise ValueError(
                f"first_frame must be 'none' or 'zero', got {first_frame!r}")
        if variation_norm not in ('none', 'video'):
            raise ValueError("variation_norm must be 'none' or 'video', got "
                             f'{variation_norm!r}')
        if variation_grad not in ('straight_through', 'none'):
            raise ValueError("variation_grad must be 'straight_through' or "
                             f"'none', got {variation_grad!r}")
        self.embed_dims = embed_dims
        self.num_patches = num_patches
        self.beta = beta
        self.eta = eta
        self.min_prompts = min_prompts
        self.max_prompts = max_prompts
        self.first_frame = first_frame
        self.variation_norm = variation_norm
        self.variation_grad = variation_grad
        self.prompt_scale = prompt_scale

        self.variation_scorer = nn.Conv3d(
            1, 1, scorer_kernel_size, padding=same_padding(scorer_kernel_size))
        self.attention = nn.MultiheadAttention(
            embed_dims, num_heads, batch_first=True)
        pad = same_padding(kernel_size)
        self.conv = nn.Sequential(
            nn.Conv3d(1, hidden_channels, kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv3d(hidden_channels, 1, kernel_size, padding=pad),
        )
        # one output head per possible count (a count of 0 needs none)
        self.heads = nn.ModuleDict({
            str(n): nn.Linear(num_patches, n)
            for n in range(max(1, min_prompts), max_prompts + 1)
        })
        self.dropout = nn.Dropout(dropout)

    def counts(self, w: torch.Tensor) -> torch.Tensor:
        """``clamp(ceil(eta * w), min_prompts, max_prompts)`` as int64."""
        n = torch.ceil(self.eta * w.detach())
        return n.clamp(self.min_prompts, self.max_prompts).long()

    def frame_prompts(self,
                      tokens: torch.Tensor,
                      region_mask: Optional[torch.Tensor] = None
                      ) -> InterFramePrompts:
        """The backbone hook: :meth:`forward`, as extra slots per frame.

        Args:
            tokens (torch.Tensor): Layer-0 tokens ``[B, T, 1+N, D]``, after
                the intra-frame prompt.
            region_mask (torch.Tensor, optional): Intra-frame region mask.

        Returns:
            InterFramePrompts: ``extra`` the prompts
            ``[B, T, max_prompts, D]``, ``extra_padding`` their padding mask;
            intermediates ``w_raw``, ``w``, ``inter_prompt`` (the prompts),
            ``inter_counts`` and ``inter_padding``.
        """
        out = self(tokens, region_mask)
        return InterFramePrompts(
            local_offset=None,
            extra=out['prompts'],
            extra_padding=out['padding_mask'],
            intermediates=dict(
                w_raw=out['w_raw'],
                w=out['w'],
                inter_prompt=out['prompts'],
                inter_counts=out['counts'],
                inter_padding=out['padding_mask']))

    def forward(self,
                tokens: torch.Tensor,
                region_mask: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """Compute the dynamic inter-frame prompts.

        Args:
            tokens (torch.Tensor): Layer-0 tokens ``[B, T, 1+N, D]`` (CLS
                first), after the intra-frame prompt.
            region_mask (torch.Tensor, optional): Intra region mask with
                ``N`` cells per frame (``[B, T, N]`` or ``[B, T, G, G]``);
                ``None`` weights every patch by 1.

        Returns:
            dict: per frame: ``prompts`` ``[B, T, max_prompts, D]`` (padded
            slots are 0), ``padding_mask`` ``[B, T, max_prompts]`` (True =
            padded), ``counts`` ``[B, T]``, ``w_raw`` and ``w``
            (``W`` before/after ``variation_norm``, ``[B, T]``). Frame 0 has
            count 0 and ``w = 0`` when ``first_frame='none'``.
        """
        B, T, L, D = tokens.shape
        N = self.num_patches
        if L != N + 1 or D != self.embed_dims:
            raise ValueError(
                f'{type(self).__name__} expects tokens [B, T, {N + 1}, '
                f'{self.embed_dims}] (CLS first), got {list(tokens.shape)}')
        z = tokens[:, :, 1:]
        diff = z[:, 1:] - z[:, :-1]  # eq. 8, [B, T-1, N, D]
        r = None
        if region_mask is not None:
            r = region_mask.reshape(B, T, -1).to(z.dtype)
            if r.shape[2] != N:
                raise ValueError(f'region mask with {r.shape[2]} cells does '
                                 f'not match {N} patches')
        skip = 1 if self.first_frame == 'none' else 0
        if skip:
            r = None if r is None else r[:, 1:]
        else:
            diff = torch.cat([torch.zeros_like(z[:, :1]), diff], dim=1)
        n_groups = diff.shape[1]

        M = self.max_prompts
        prompts = z.new_zeros(B, n_groups, M, D)
        w_raw = z.new_zeros(B, n_groups)
        w = w_raw
        counts = torch.zeros(B, n_groups, dtype=torch.long, device=z.device)
        if n_groups:
            # eqs. 9-10
            scorer = self.variation_scorer
            h = conv3d_same(
                diff.unsqueeze(1), scorer.weight, scorer.bias,
                scorer.padding).squeeze(1)
            energy = h.pow(2).sum(dim=-1)  # [B, G, N]
            if r is not None:
                energy = energy * (1 + self.beta * r)
            w_raw = energy.sum(dim=-1) / (N * D)
            w = w_raw if self.variation_norm == 'none' else \
                normalize_frame_scores(w_raw, 'video')
            counts = self.counts(w)  # eq. 11
            # eq. 12
            seq = diff.reshape(B, n_groups * N, D)
            a = self.attention(seq, seq, seq, need_weights=False)[0]
            q = run_conv_stack(self.conv,
                               a.reshape(B, n_groups, N, D).unsqueeze(1))
            q = q.squeeze(1)
            q = q.transpose(2, 3)  # [B, G, D, N]: heads mix the patch axis
            for n in counts.unique().tolist():
                if n == 0:
                    continue
                sel = counts == n
                # heads run in the autocast dtype; the slots keep z's
                prompts[sel, :n] = self.heads[str(n)](q[sel]).transpose(
                    1, 2).to(prompts.dtype)
            prompts = self.dropout(prompts)
            if self.variation_grad == 'straight_through':
                prompts = prompts * (1 + (w - w.detach()))[..., None, None]
            prompts = prompts * self.prompt_scale
        if skip:  # frame 0 has no group
            prompts = torch.cat([prompts.new_zeros(B, 1, M, D), prompts], 1)
            counts = torch.cat([counts.new_zeros(B, 1), counts], 1)
            w_raw = torch.cat([w_raw.new_zeros(B, 1), w_raw], 1)
            w = torch.cat([w.new_zeros(B, 1), w], 1)
        slots = torch.arange(M, device=z.device)
        padding_mask = slots >= counts[..., None]
        return dict(
            prompts=prompts,
            padding_mask=padding_mask,
            counts=counts,
            w_raw=w_raw,
            w=w)


def build_inter_frame_prompt(cfg: Optional[dict],
                             **defaults) -> Optional[BaseInterFramePrompt]:
    """Build the inter-frame prompt of a config (``None``: no inter prompt).

    ``mode='official'``: :class:`AttentiveInterFramePrompt`; ``'paper'``:
    :class:`DynamicInterFramePrompt`; ``type=...``: any registered
    :class:`~.base.BaseInterFramePrompt`. Option rules:
    :func:`~.builder.build_mode_module`.

    Args:
        cfg (dict, optional): ``dict(mode=..., **options)`` or
            ``dict(type=..., **options)``.
        **defaults: Sizes known to the backbone, for the options the config
            does not set.

    Returns:
        BaseInterFramePrompt | None: The module.
    """
    return build_mode_module(
        'inter_prompt',
        cfg,
        dict(
            official='AttentiveInterFramePrompt',
            paper='DynamicInterFramePrompt'),
        base=BaseInterFramePrompt,
        **defaults)
