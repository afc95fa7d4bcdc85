# Copyright (c) mmstop contributors. All rights reserved.
"""STOP intra-frame spatial prompting.

Two variants of the same mechanism, selected by ``mode`` in the backbone
config (see :func:`build_intra_frame_prompt`):

* ``'official'`` (:class:`PixelIntraFramePrompt`): what the released STOP
  code computes (spec ``stop.md`` section 2.2). A 3D-conv prompter runs on
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
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmstop.registry import MODELS
from .builder import build_mode_module
from ..utils import conv3d_same


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f'expected an int or a pair, got {v!r}')
    return v


def _same_padding(kernel_size: Sequence[int]) -> Tuple[int, ...]:
    for k in kernel_size:
        if k % 2 != 1:
            raise ValueError(
                f'kernel sizes must be odd for "same" padding, got {kernel_size}')
    return tuple((k - 1) // 2 for k in kernel_size)


def _run_conv_stack(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply a Sequential of Conv3d / activations through ``conv3d_same``."""
    for layer in stack:
        if isinstance(layer, nn.Conv3d):
            x = conv3d_same(x, layer.weight, layer.bias, layer.padding)
        else:
            x = layer(x)
    return x


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
class PixelIntraFramePrompt(nn.Module):
    """Official STOP intra-frame prompt, applied to pixels (``mode='official'``).

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
        self.image_size = _pair(image_size)
        self.patch_size = _pair(patch_size)
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(
                f'image_size {self.image_size} must be a multiple of '
                f'patch_size {self.patch_size}')
        self.grid_size = tuple(
            s // p for s, p in zip(self.image_size, self.patch_size))
        if mask_pooling not in ('residue', 'patch'):
            raise ValueError(
                f"mask_pooling must be 'residue' or 'patch', got {mask_pooling!r}")
        if len(hidden_channels) != 3:
            raise ValueError(
                f'hidden_channels must have 3 entries, got {hidden_channels}')
        self.in_channels = in_channels
        self.num_regions = num_regions
        self.mask_pooling = mask_pooling
        self.prompt_scale = prompt_scale
        self.region_scale = region_scale

        c0, c1, c2 = hidden_channels
        pad = _same_padding(kernel_size)
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
            in_channels, 1, scorer_kernel_size,
            padding=_same_padding(scorer_kernel_size))

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
        """Expand a ``[B, T, G, G]`` cell mask to ``[B, T, 1, H, W]`` pixels."""
        B, T = mask.shape[:2]
        (gh, gw), (ph, pw) = self.grid_size, self.patch_size
        if self.mask_pooling == 'residue':
            # pixel (G*a + u, G*c + v) belongs to cell (u, v)
            pix = mask[:, :, None, :, None, :].expand(B, T, ph, gh, pw, gw)
        else:
            # pixel (P*u + i, P*v + j) belongs to cell (u, v)
            pix = mask[:, :, :, None, :, None].expand(B, T, gh, ph, gw, pw)
        return pix.reshape(B, T, 1, gh * ph, gw * pw)

    def region_mask(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Region scores ``[B, T, G, G]`` and boolean mask of the same shape."""
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
        prompt = _run_conv_stack(self.generator, x.transpose(1, 2))
        prompt = self.dropout_conv(prompt)
        prompt = self.mlp(prompt.permute(0, 2, 3, 4, 1))  # [B, T, H, W, C]
        prompt = self.dropout_mlp(prompt)
        prompt = self.dropout_mlp(prompt.permute(0, 1, 4, 2, 3))
        scores, mask = self.region_mask(x)
        pixel_mask = self.expand_mask(mask).to(prompt.dtype)
        frames = x + prompt * self.prompt_scale + (
            prompt * pixel_mask) * self.region_scale
        return dict(frames=frames, scores=scores, mask=mask)


def build_intra_frame_prompt(cfg: Optional[dict], **defaults) -> Optional[nn.Module]:
    """Build the intra prompt from ``dict(mode=..., **options)``.

    ``mode='official'`` builds :class:`PixelIntraFramePrompt`, ``'paper'`` builds
    :class:`TokenIntraFramePrompt`; ``None`` disables the mechanism. ``defaults``
    (sizes known to the backbone) fill the options the config does not set.
    """
    return build_mode_module(
        'intra_prompt', cfg, {'official': 'PixelIntraFramePrompt', 'paper': 'TokenIntraFramePrompt'}, **defaults)
