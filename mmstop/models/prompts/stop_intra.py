# Copyright (c) mmstop contributors. All rights reserved.
"""STOP intra-frame spatial prompting.

Two variants of the same mechanism, selected by ``mode`` in the backbone
config (see :func:`build_intra_frame_prompt`):

* ``'official'`` (:class:`PixelIntraFramePrompt`): what the released STOP
  code computes (``docs/stop.md#intra-frame-prompts-official-code``). A
  3D-conv prompter runs on
  the normalised RGB frames and its output is added in *pixel space*, once,
  before the patch embedding: ``x + s*P + s*P*M``. The region mask ``M`` is
  the top-``num_regions`` cells of a ``grid x grid`` pooling of a 3D-conv
  score map. The official code pools over residue classes modulo the grid
  (``mask_pooling='residue'``), so "regions" are a periodic pixel lattice
  over the whole frame; ``mask_pooling='patch'`` pools over the patches
  instead and gives spatially localised regions.
* ``'paper'`` (:class:`TokenIntraFramePrompt`): the paper's equations 2-7, in
  token space, at every layer: region score ``alpha*A + (1-alpha)*M`` from the
  CLS attention map and the temporal dynamics of a 3D conv, and prompts added
  to the ``num_regions`` selected patch tokens only. No official numbers
  exist for it.

Both implement :class:`~.base.BaseIntraFramePrompt`, the interface through
which :class:`~mmstop.models.backbones.STOPCLIP` calls them.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.utils import to_2tuple

from mmstop.registry import MODELS
from ..utils import conv3d_same, minmax_normalize, run_conv_stack, same_padding
from .base import BaseIntraFramePrompt, IntraFramePromptOutput
from .builder import build_mode_module


def top_k_strict_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Cells strictly greater than the ``(k+1)``-th largest score.

    This is the official STOP selection rule: sort the ``G*G`` scores of a
    frame in descending order, take the value at index ``k`` and keep the
    cells strictly above it. It keeps exactly ``k`` cells, or fewer on ties.

    Args:
        scores (torch.Tensor): ``[..., G, G]`` region scores.
        k (int): Number of regions to keep; ``0 <= k < G*G``.

    Returns:
        torch.Tensor: Boolean mask with the shape of ``scores``.
    """
    flat = scores.flatten(-2)
    if not 0 <= k < flat.shape[-1]:
        raise ValueError(
            f'num_regions must be in [0, {flat.shape[-1] - 1}] for a '
            f'{scores.shape[-2]}x{scores.shape[-1]} grid, got {k}')
    threshold = flat.sort(dim=-1, descending=True)[0][..., k]
    return scores > threshold[..., None, None]


@MODELS.register_module()
class PixelIntraFramePrompt(BaseIntraFramePrompt):
    """Official STOP intra-frame prompt, applied to pixels
    (``mode='official'``).

    Given normalised frames ``x`` of shape ``[B, T, 3, H, W]``:

    1. Prompter: ``Conv3d(3->c0) -> Conv3d(c0->c0) -> PReLU -> Conv3d(c0->c1)
       -> PReLU -> Conv3d(c1->c2)`` ("same" padding), dropout, a per-pixel MLP
       ``c2 -> mlp_channels -> PReLU -> 3``, dropout applied twice (the
       official code reuses one dropout module): prompt ``P``.
    2. Region scorer: ``Conv3d(3->1)`` on ``x``; the ``H x W`` score map is
       pooled to the ``grid x grid`` patch grid (``mask_pooling``) and the
       ``num_regions`` strictly largest cells form the mask ``R``. The mask is
       a hard comparison, so the scorer receives no gradient (as officially).
    3. Output ``x + prompt_scale*P + region_scale*P*M`` where ``M`` is ``R``
       expanded to pixels.

    In :class:`~mmstop.models.backbones.STOPCLIP` it acts through
    :meth:`prompt_pixels`, before the patch embedding; its region mask feeds
    the inter-frame prompt.

    Args:
        image_size (int | tuple[int, int]): Input frame size ``(H, W)``.
        patch_size (int | tuple[int, int]): ViT patch size; the region grid is
            ``image_size // patch_size``.
        in_channels (int): Image channels. Defaults to 3.
        num_regions (int): Regions kept per frame (the paper's ``N_s``; the
            official code's ``eta``). Defaults to 6.
        mask_pooling (str): ``'residue'`` (official: cell ``(u, v)`` averages
            the pixels ``(G*a+u, G*c+v)``, so the mask is a periodic lattice)
            or ``'patch'`` (cell = its ``P x P`` patch). Defaults to
            ``'residue'``.
        hidden_channels (Sequence[int]): ``(c0, c1, c2)`` of the prompter
            convolutions. Defaults to ``(9, 9, 16)``.
        mlp_channels (int): Hidden width of the per-pixel MLP. Defaults to 16.
        kernel_size (Sequence[int]): Prompter kernel ``(kT, kH, kW)``.
            Defaults to ``(3, 11, 11)``.
        scorer_kernel_size (Sequence[int]): Region-scorer kernel. Defaults to
            ``(5, 11, 11)``.
        dropout (float): Dropout probability at the prompter outputs (applied
            three times, as officially). Defaults to 0.5.
        prompt_scale (float): Scale of the prompt everywhere. Defaults to 0.05.
        region_scale (float): Extra scale inside the region mask. Defaults to
            0.05.
    """

    def __init__(self,
                 image_size: Union[int, Sequence[int]],
                 patch_size: Union[int, Sequence[int]],
                 in_channels: int = 3,
                 num_regions: int = 6,
                 mask_pooling: str = 'residue',
                 hidden_channels: Sequence[int] = (9, 9, 16),
                 mlp_channels: int = 16,
                 kernel_size: Sequence[int] = (3, 11, 11),
                 scorer_kernel_size: Sequence[int] = (5, 11, 11),
                 dropout: float = 0.5,
                 prompt_scale: float = 0.05,
                 region_scale: float = 0.05) -> None:
        super().__init__()
        self.image_size = tuple(to_2tuple(image_size))
        self.patch_size = tuple(to_2tuple(patch_size))
        if len(self.image_size) != 2 or len(self.patch_size) != 2:
            raise ValueError('image_size and patch_size must be ints or '
                             f'pairs, got {image_size!r} and {patch_size!r}')
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(
                f'image_size {self.image_size} must be a multiple of '
                f'patch_size {self.patch_size}')
        self.grid_size = tuple(
            s // p for s, p in zip(self.image_size, self.patch_size))
        if mask_pooling not in ('residue', 'patch'):
            raise ValueError("mask_pooling must be 'residue' or 'patch', got "
                             f'{mask_pooling!r}')
        if len(hidden_channels) != 3:
            raise ValueError(
                f'hidden_channels must have 3 entries, got {hidden_channels}')
        self.in_channels = in_channels
        self.num_regions = num_regions
        self.mask_pooling = mask_pooling
        self.prompt_scale = prompt_scale
        self.region_scale = region_scale

        c0, c1, c2 = hidden_channels
        pad = same_padding(kernel_size)
        self.generator = nn.Sequential(
            nn.Conv3d(in_channels, c0, kernel_size, padding=pad),
            nn.Conv3d(c0, c0, kernel_size, padding=pad),
            nn.PReLU(),
            nn.Conv3d(c0, c1, kernel_size, padding=pad),
            nn.PReLU(),
            nn.Conv3d(c1, c2, kernel_size, padding=pad),
        )
        self.mlp = nn.Sequential(
            nn.Linear(c2, mlp_channels),
            nn.PReLU(),
            nn.Linear(mlp_channels, in_channels),
        )
        self.dropout_conv = nn.Dropout(dropout)
        self.dropout_mlp = nn.Dropout(dropout)
        self.region_scorer = nn.Conv3d(
            in_channels,
            1,
            scorer_kernel_size,
            padding=same_padding(scorer_kernel_size))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[2] != self.in_channels or tuple(
                x.shape[-2:]) != self.image_size:
            raise ValueError(
                f'{type(self).__name__} expects frames of shape '
                f'[B, T, {self.in_channels}, {self.image_size[0]}, '
                f'{self.image_size[1]}], got {list(x.shape)}')

    def pool_scores(self, score_map: torch.Tensor) -> torch.Tensor:
        """Pool a ``[B, T, H, W]`` score map to ``[B, T, G, G]`` cells."""
        B, T = score_map.shape[:2]
        (gh, gw), (ph, pw) = self.grid_size, self.patch_size
        if self.mask_pooling == 'residue':
            return score_map.reshape(B, T, ph, gh, pw, gw).mean(dim=(2, 4))
        return score_map.reshape(B, T, gh, ph, gw, pw).mean(dim=(3, 5))

    def expand_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Expand a ``[B, T, G, G]`` cell mask to ``[B, T, 1, H, W]``
        pixels."""
        B, T = mask.shape[:2]
        (gh, gw), (ph, pw) = self.grid_size, self.patch_size
        if self.mask_pooling == 'residue':
            # pixel (G*a + u, G*c + v) belongs to cell (u, v)
            pix = mask[:, :, None, :, None, :].expand(B, T, ph, gh, pw, gw)
        else:
            # pixel (P*u + i, P*v + j) belongs to cell (u, v)
            pix = mask[:, :, :, None, :, None].expand(B, T, gh, ph, gw, pw)
        return pix.reshape(B, T, 1, gh * ph, gw * pw)

    def region_mask(self,
                    x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Region scores ``[B, T, G, G]`` and boolean mask of the same
        shape."""
        score_map = conv3d_same(
            x.transpose(1, 2), self.region_scorer.weight,
            self.region_scorer.bias, self.region_scorer.padding)
        scores = self.pool_scores(score_map.squeeze(1))
        return scores, top_k_strict_mask(scores, self.num_regions)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Prompt the frames.

        Args:
            x (torch.Tensor): Normalised frames ``[B, T, C, H, W]``.

        Returns:
            dict: ``frames`` (prompted, same shape as ``x``), ``scores``
            (pooled region scores ``[B, T, G, G]``) and ``mask`` (boolean
            ``[B, T, G, G]``).
        """
        self._check_input(x)
        prompt = run_conv_stack(self.generator, x.transpose(1, 2))
        prompt = self.dropout_conv(prompt)
        prompt = self.mlp(prompt.permute(0, 2, 3, 4, 1))  # [B, T, H, W, C]
        prompt = self.dropout_mlp(prompt)
        prompt = self.dropout_mlp(prompt.permute(0, 1, 4, 2, 3))
        scores, mask = self.region_mask(x)
        pixel_mask = self.expand_mask(mask).to(prompt.dtype)
        frames = x + prompt * self.prompt_scale + (
            prompt * pixel_mask) * self.region_scale
        return dict(frames=frames, scores=scores, mask=mask)

    def prompt_pixels(self, frames: torch.Tensor) -> IntraFramePromptOutput:
        """The backbone hook: :meth:`forward` before the patch embedding.

        Args:
            frames (torch.Tensor): Normalised frames ``[B, T, C, H, W]``.

        Returns:
            IntraFramePromptOutput: The prompted frames, the region mask
            ``[B, T, G, G]`` and the intermediates ``prompted_pixels`` and
            ``mask_pooled`` (the pooled region scores).
        """
        out = self(frames)
        return IntraFramePromptOutput(
            out['frames'], out['mask'],
            dict(prompted_pixels=out['frames'], mask_pooled=out['scores']))


def top_k_exact_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest entries of the last axis, exactly ``k`` of them.

    Ties are broken deterministically in favour of the lower index (a
    stable descending sort), so every row keeps exactly ``k`` entries even
    when scores are equal (unlike :func:`top_k_strict_mask`).

    Args:
        scores (torch.Tensor): ``[..., N]`` scores.
        k (int): Entries to keep; ``0 <= k <= N``.

    Returns:
        torch.Tensor: Boolean mask with the shape of ``scores``.
    """
    n = scores.shape[-1]
    if not 0 <= k <= n:
        raise ValueError(f'num_regions must be in [0, {n}], got {k}')
    order = torch.sort(scores, dim=-1, descending=True, stable=True)[1]
    index = order[..., :k]
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    # a tensor source, not the Python scalar True: torch.jit.trace (FLOP
    # counters) has no schema for scatter with a bool scalar
    return mask.scatter(-1, index, torch.ones_like(index, dtype=torch.bool))


def cls_attention_map(tokens: torch.Tensor, norm: nn.Module,
                      attn: nn.MultiheadAttention) -> torch.Tensor:
    """Head-averaged attention of each frame's CLS token over its patches.

    The paper's ``A_i = Attn(h_cls, h_i)`` (equation 2) "using the
    self-attention module of the pre-trained model": the block's (frozen)
    ``norm`` and the query/key part of ``attn.in_proj``; softmax over the
    frame's ``1 + N`` keys (CLS and patches), averaged over heads, CLS entry
    dropped.

    Args:
        tokens (torch.Tensor): Frame tokens ``[..., 1+N, D]``, CLS first.
        norm (nn.Module): The block's pre-attention norm (``ln_1``).
        attn (nn.MultiheadAttention): The block's attention.

    Returns:
        torch.Tensor: ``[..., N]`` attention probabilities of the patches.
    """
    if attn.in_proj_weight is None:
        raise ValueError('cls_attention_map needs an attention with a packed '
                         'in_proj_weight (same embedding size for q, k, v)')
    x = norm(tokens)
    D, heads = x.shape[-1], attn.num_heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    q = F.linear(x[..., :1, :], weight[:D], None if bias is None else bias[:D])
    k = F.linear(x, weight[D:2 * D], None if bias is None else bias[D:2 * D])
    head_dims = D // heads
    q = q.unflatten(-1, (heads, head_dims)).transpose(-2, -3)  # [..., H, 1, d]
    # [..., H, 1+N, d]
    k = k.unflatten(-1, (heads, head_dims)).transpose(-2, -3)
    logits = (q * head_dims**-0.5) @ k.transpose(-1, -2)  # [..., H, 1, 1+N]
    return logits.softmax(dim=-1).mean(dim=-3)[..., 0, 1:]


def normalize_region_scores(scores: torch.Tensor, mode: str) -> torch.Tensor:
    """Bring a ``[..., N]`` score to a common scale along its last axis.

    Args:
        scores (torch.Tensor): Non-negative scores ``[..., N]``.
        mode (str): ``'none'`` (unchanged), ``'minmax'`` (to ``[0, 1]`` per
            row; constant rows map to 0) or ``'sum'`` (divided by the row
            sum; all-zero rows stay 0).

    Returns:
        torch.Tensor: Normalised scores.
    """
    if mode == 'none':
        return scores
    if mode == 'minmax':
        return minmax_normalize(scores, dim=-1)
    if mode == 'sum':
        total = scores.sum(dim=-1, keepdim=True)
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return scores / safe
    raise ValueError(
        f"score_norm must be 'none', 'minmax' or 'sum', got {mode!r}")


class TokenPrompter(nn.Module):
    """Token-space prompter ``P^s`` of the paper (equation 1, Figure 2b).

    ``Conv3d -> ReLU -> Conv3d -> Linear -> ReLU -> Linear -> Dropout``. The
    convolutions run on the patch tokens of a video viewed as a one-channel
    volume over (frame, patch, channel), the layout the paper gives for its
    3D convolutions. The first has temporal kernel ``kernel_size[0]`` (3: the
    window ``h_{i-1}, h_i, h_{i+1}`` of equation 1, zero padded at the ends of
    the video), the second temporal kernel 1, so each frame's prompt sees
    exactly ``kernel_size[0]`` frames. The two linear layers mix channels per
    token.

    Args:
        embed_dims (int): Token width ``D``.
        hidden_channels (int): Channels between the convolutions.
        kernel_size (Sequence[int]): First conv kernel (frame, patch,
            channel), odd sizes.
        mlp_channels (int): Hidden width of the linear layers.
        dropout (float): Output dropout probability.
    """

    def __init__(self, embed_dims: int, hidden_channels: int,
                 kernel_size: Sequence[int], mlp_channels: int,
                 dropout: float) -> None:
        super().__init__()
        second = (1, ) + tuple(kernel_size[1:])
        self.conv = nn.Sequential(
            nn.Conv3d(
                1,
                hidden_channels,
                kernel_size,
                padding=same_padding(kernel_size)),
            nn.ReLU(),
            nn.Conv3d(
                hidden_channels, 1, second, padding=same_padding(second)),
        )
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, mlp_channels),
            nn.ReLU(),
            nn.Linear(mlp_channels, embed_dims),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``[B, T, N, D]`` patch tokens -> prompts of the same shape."""
        x = run_conv_stack(self.conv, patches.unsqueeze(1)).squeeze(1)
        return self.dropout(self.mlp(x))


@MODELS.register_module()
class TokenIntraFramePrompt(BaseIntraFramePrompt):
    """The paper's intra-frame spatial prompt on tokens (``mode='paper'``).

    Equations 1-7 of STOP (``docs/stop.md#the-papers-method``,
    ``docs/stop.md#paper-mode``), applied to the patch tokens ``h``
    ``[B, T, N, D]`` just before the attention of every layer in ``layers``
    (in :class:`~mmstop.models.backbones.STOPCLIP`: :meth:`prompt_tokens`):

    * ``A`` (eq. 2): :func:`cls_attention_map` with that layer's frozen
      ``ln_1`` and attention (CLS query over the frame's CLS and patch keys,
      softmax, head average, patch entries kept). In the DGL token layout the
      frame's real attention also sees prompt tokens; ``A`` deliberately uses
      only the frame's own ``1 + N`` tokens, as the paper defines it.
    * ``M`` (eqs. 3-4): mean over channels of the square of ``N^s(h)``, a
      trainable ``Conv3d(1->1)`` over the (frame, patch, channel) volume.
    * ``W^s = alpha*norm(A) + (1-alpha)*norm(M)`` (eq. 5); ``score_norm``
      resolves the open point of their different scales (``A`` is a
      probability, ``M`` an unbounded mean square).
    * ``r``: exactly ``num_regions`` patches per frame, the top-k of ``W^s``
      with ties going to the lower patch index (eq. 6).
    * ``h^s = h + r * prompt_scale * P^s(h)`` (eqs. 1, 7), only on the selected
      patch tokens; :class:`TokenPrompter` is ``P^s``.

    The mask is a hard top-k, so taken literally ``N^s`` would never receive
    a gradient (the official code's scorer has the same problem).
    ``region_grad='straight_through'`` keeps the forward values exactly but
    back-propagates through ``r`` as if it were ``W^s``
    (``r = hard + W^s - stopgrad(W^s)``), which trains ``N^s`` through the
    prompts' effect on the loss. The score path reads detached tokens, so
    this gradient reaches ``N^s`` only.

    Args:
        embed_dims (int): Token width ``D``.
        num_patches (int): Patch tokens per frame ``N``.
        num_layers (int): Depth of the encoder (to check ``layers``).
        layers (Sequence[int], optional): Layers whose input is prompted.
            Defaults to None: every layer (Figure 2, "xL").
        share_across_layers (bool): One ``N^s`` and ``P^s`` for all layers
            (the paper counts "two 3D convolutional layers ... and two
            prompters") or one pair per prompted layer. Defaults to True.
        num_regions (int): Patches prompted per frame ``N_s``. Defaults to 6.
        alpha (float): Weight of ``A`` in the region score. Defaults to 0.4.
        score_norm (str): Normalisation of ``A`` and ``M`` over the patches
            of each frame before mixing: ``'minmax'`` (each to ``[0, 1]``),
            ``'sum'`` (each divided by its sum) or ``'none'`` (raw, the paper
            as written). Defaults to ``'minmax'``.
        region_grad (str): ``'straight_through'`` or ``'none'`` (literal hard
            mask; ``N^s`` gets no gradient). Defaults to
            ``'straight_through'``.
        hidden_channels (int): Channels between the prompter convolutions.
            Defaults to 8.
        kernel_size (Sequence[int]): Prompter first-conv kernel (frame, patch,
            channel). Defaults to ``(3, 3, 3)``.
        mlp_channels (int, optional): Hidden width of the prompter's linear
            layers. Defaults to ``embed_dims // 4``.
        scorer_kernel_size (Sequence[int]): Kernel of ``N^s``. Defaults to
            ``(3, 3, 3)``.
        dropout (float): Prompter output dropout. Defaults to 0.1.
        prompt_scale (float): Factor on the prompts (the paper has none).
            Defaults to 1.0.
    """

    def __init__(self,
                 embed_dims: int,
                 num_patches: int,
                 num_layers: int,
                 layers: Optional[Sequence[int]] = None,
                 share_across_layers: bool = True,
                 num_regions: int = 6,
                 alpha: float = 0.4,
                 score_norm: str = 'minmax',
                 region_grad: str = 'straight_through',
                 hidden_channels: int = 8,
                 kernel_size: Sequence[int] = (3, 3, 3),
                 mlp_channels: Optional[int] = None,
                 scorer_kernel_size: Sequence[int] = (3, 3, 3),
                 dropout: float = 0.1,
                 prompt_scale: float = 1.0) -> None:
        super().__init__()
        if layers is None:
            layers = range(num_layers)
        layers = sorted(set(int(i) for i in layers))
        if not layers or layers[0] < 0 or layers[-1] >= num_layers:
            raise ValueError(
                f'intra_prompt layers must be a non-empty subset of '
                f'[0, {num_layers - 1}], got {layers}')
        if not 0 <= num_regions <= num_patches:
            raise ValueError(f'num_regions must be in [0, {num_patches}], '
                             f'got {num_regions}')
        if not 0. <= alpha <= 1.:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        if score_norm not in ('none', 'minmax', 'sum'):
            raise ValueError("score_norm must be 'none', 'minmax' or 'sum', "
                             f'got {score_norm!r}')
        if region_grad not in ('straight_through', 'none'):
            raise ValueError("region_grad must be 'straight_through' or "
                             f"'none', got {region_grad!r}")
        if len(kernel_size) != 3 or len(scorer_kernel_size) != 3:
            raise ValueError(
                'kernel_size and scorer_kernel_size must have 3 entries, got '
                f'{kernel_size}, {scorer_kernel_size}')
        self.embed_dims = embed_dims
        self.num_patches = num_patches
        self.layers = tuple(layers)
        self.share_across_layers = share_across_layers
        self.num_regions = num_regions
        self.alpha = alpha
        self.score_norm = score_norm
        self.region_grad = region_grad
        self.prompt_scale = prompt_scale
        n_modules = 1 if share_across_layers else len(self.layers)
        self._module_index = {
            layer: 0 if share_across_layers else i
            for i, layer in enumerate(self.layers)
        }
        pad = same_padding(scorer_kernel_size)
        self.scorers = nn.ModuleList(
            nn.Conv3d(1, 1, scorer_kernel_size, padding=pad)
            for _ in range(n_modules))
        self.prompters = nn.ModuleList(
            TokenPrompter(embed_dims, hidden_channels, kernel_size,
                          mlp_channels or max(1, embed_dims // 4), dropout)
            for _ in range(n_modules))

    def applies_to(self, layer: int) -> bool:
        """Whether the input of ``layer`` is prompted."""
        return layer in self._module_index

    def prompts_layer(self, layer: int) -> bool:
        """The backbone hook: :meth:`applies_to`."""
        return self.applies_to(layer)

    def prompt_tokens(self, tokens: torch.Tensor, layer: int, norm: nn.Module,
                      attn: nn.MultiheadAttention) -> IntraFramePromptOutput:
        """The backbone hook: :meth:`forward` at the input of ``layer``.

        Args:
            tokens (torch.Tensor): Frame tokens ``[B, T, 1+N, D]``.
            layer (int): Layer index (one of ``layers``).
            norm (nn.Module): That layer's frozen ``ln_1``.
            attn (nn.MultiheadAttention): That layer's frozen attention.

        Returns:
            IntraFramePromptOutput: The prompted tokens, the region mask
            ``[B, T, N]`` and the intermediates ``intra_mask``,
            ``intra_scores``, ``intra_attn_map`` and ``intra_dynamics``
            (``[B, T, N]`` each).
        """
        out = self(tokens, layer, norm=norm, attn=attn)
        return IntraFramePromptOutput(
            out['tokens'], out['mask'], {
                f'intra_{key}': out[key]
                for key in ('mask', 'scores', 'attn_map', 'dynamics')
            })

    def region_scores(self,
                      tokens: torch.Tensor,
                      layer: int,
                      norm: Optional[nn.Module] = None,
                      attn: Optional[nn.MultiheadAttention] = None
                      ) -> Dict[str, torch.Tensor]:
        """``A``, ``M`` and ``W^s`` (``[B, T, N]`` each) for ``tokens``."""
        scorer = self.scorers[self._module_index[layer]]
        tokens = tokens.detach()
        h = conv3d_same(tokens[:, :, 1:].unsqueeze(1), scorer.weight,
                        scorer.bias, scorer.padding).squeeze(1)
        dynamics = h.pow(2).mean(dim=-1)
        if self.alpha > 0:
            if norm is None or attn is None:
                raise ValueError(
                    'TokenIntraFramePrompt with alpha > 0 needs the layer\'s '
                    'norm and attention to compute the CLS attention map')
            with torch.no_grad():
                attn_map = cls_attention_map(tokens, norm, attn)
        else:
            attn_map = torch.zeros_like(dynamics)
        scores = self.alpha * normalize_region_scores(
            attn_map, self.score_norm) + (1 - self.alpha) * \
            normalize_region_scores(dynamics, self.score_norm)
        return dict(attn_map=attn_map, dynamics=dynamics, scores=scores)

    def forward(self,
                tokens: torch.Tensor,
                layer: int,
                norm: Optional[nn.Module] = None,
                attn: Optional[nn.MultiheadAttention] = None
                ) -> Dict[str, torch.Tensor]:
        """Prompt the discriminative patch tokens of every frame.

        Args:
            tokens (torch.Tensor): Frame tokens ``[B, T, 1+N, D]`` (CLS first)
                at the input of ``layer``.
            layer (int): Layer index (one of ``layers``).
            norm (nn.Module, optional): That layer's frozen ``ln_1``.
            attn (nn.MultiheadAttention, optional): That layer's frozen
                attention. ``norm`` and ``attn`` are needed when ``alpha > 0``.

        Returns:
            dict: ``tokens`` (prompted, same shape), ``mask`` (boolean region
            mask ``[B, T, N]``), ``scores`` (``W^s``), ``attn_map`` (``A``),
            ``dynamics`` (``M``) and ``prompts`` (``P^s`` output, scaled,
            before masking), all ``[B, T, N(, D)]``.
        """
        if tokens.dim() != 4 or tokens.shape[2] != self.num_patches + 1 or \
                tokens.shape[3] != self.embed_dims:
            raise ValueError(
                f'{type(self).__name__} expects tokens [B, T, '
                f'{self.num_patches + 1}, {self.embed_dims}] (CLS first), got '
                f'{list(tokens.shape)}')
        if not self.applies_to(layer):
            raise ValueError(f'layer {layer} is not in the prompted layers '
                             f'{list(self.layers)}')
        out = self.region_scores(tokens, layer, norm, attn)
        scores = out['scores']
        mask = top_k_exact_mask(scores.detach(), self.num_regions)
        r = mask.to(tokens.dtype)
        if self.region_grad == 'straight_through':
            # forward value stays exactly the hard mask
            r = r + (scores - scores.detach())
        patches = tokens[:, :, 1:]
        prompts = self.prompters[self._module_index[layer]](patches)
        prompts = prompts * self.prompt_scale
        patches = patches + r[..., None] * prompts
        out.update(
            tokens=torch.cat([tokens[:, :, :1], patches], dim=2),
            mask=mask,
            prompts=prompts)
        return out


def build_intra_frame_prompt(cfg: Optional[dict],
                             **defaults) -> Optional[BaseIntraFramePrompt]:
    """Build the intra-frame prompt of a config (``None``: no intra prompt).

    ``mode='official'``: :class:`PixelIntraFramePrompt`; ``'paper'``:
    :class:`TokenIntraFramePrompt`; ``type=...``: any registered
    :class:`~.base.BaseIntraFramePrompt`. Option rules:
    :func:`~.builder.build_mode_module`.

    Args:
        cfg (dict, optional): ``dict(mode=..., **options)`` or
            ``dict(type=..., **options)``.
        **defaults: Sizes known to the backbone, for the options the config
            does not set.

    Returns:
        BaseIntraFramePrompt | None: The module.
    """
    return build_mode_module(
        'intra_prompt',
        cfg,
        dict(official='PixelIntraFramePrompt', paper='TokenIntraFramePrompt'),
        base=BaseIntraFramePrompt,
        **defaults)
