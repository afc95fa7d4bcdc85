# Copyright (c) mmstop contributors. All rights reserved.
"""Where STOP's and SSP's prompts act on a video (the STOP paper's Figure 7).

The maps come from the models' own forward
(``return_intermediates=True``), run once on the views of one video as one
batch (as the test step runs them; official STOP normalises its frame
weights over that batch):

* :func:`stop_prompt_maps`: the intra-frame regions of every frame (official
  pixel prompt: the ``num_regions`` cells of the region mask and the pixels
  they cover, a periodic lattice with ``mask_pooling='residue'`` or whole
  patches with ``'patch'``, through the module's own ``expand_mask``; paper
  token prompt: the selected patches of every prompted layer), the
  inter-frame weight of every frame and, in paper mode, its dynamic number
  of prompts;
* :func:`ssp_prompt_maps`: SSP's entropy frame weights (Inter-Frame
  Spreading, blocks 1 ...) and the gathering map of every frame (how much
  each patch adds to the frame's vector in Intra-Frame Gathering, every
  block).

:func:`region_mosaic` draws regions onto the frames pixel for pixel;
:func:`plot_stop_view`, :func:`plot_ssp_view` and :func:`plot_summary`
return matplotlib figures.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmstop.models.prompts import PixelIntraFramePrompt, TokenIntraFramePrompt

__all__ = [
    'highlight_pixels', 'plot_ssp_view', 'plot_stop_view', 'plot_summary',
    'region_mosaic', 'ssp_prompt_maps', 'stop_prompt_maps'
]


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    return t.numpy() if t.dtype == torch.bool else t.float().numpy()


@torch.no_grad()
def stop_prompt_maps(backbone, clips: torch.Tensor) -> Dict:
    """STOP's intra-frame regions and inter-frame weights for ``clips``.

    Args:
        backbone (STOPCLIP): The STOP backbone.
        clips (torch.Tensor): The normalised views of one video
            ``[V, C, T, H, W]`` (one batch).

    Returns:
        dict: ``method`` ``'STOP'``; ``intra`` / ``inter``: the prompt
        classes (None when absent); with an intra prompt ``num_regions``,
        ``region_layers`` (``['pixels']`` for the official prompt, which
        acts once before the patch embedding; the prompted layers in paper
        mode), ``region_cells`` ``[R, V, T, G, G]`` and ``region_pixels``
        ``[R, V, T, H, W]`` (bool), and ``mask_pooling`` (official); with an
        inter prompt ``frame_weights`` and ``frame_weights_raw`` ``[V, T]``
        (``w`` and ``w_raw``) and, in paper mode, ``prompt_counts``
        ``[V, T]``.
    """
    _, out = backbone(clips, return_intermediates=True)
    intra, inter = backbone.intra_prompt, backbone.inter_prompt
    maps = dict(
        method='STOP',
        intra=None if intra is None else type(intra).__name__,
        inter=None if inter is None else type(inter).__name__)
    views, frames = clips.shape[0], clips.shape[2]
    grid, patch = backbone.grid_size, backbone.patch_size
    if isinstance(intra, PixelIntraFramePrompt):
        cells = out['mask']
        pixels = intra.expand_mask(cells)[:, :, 0]
        maps.update(
            region_layers=['pixels'],
            region_cells=cells[None],
            region_pixels=pixels[None],
            mask_pooling=intra.mask_pooling,
            num_regions=intra.num_regions)
    elif isinstance(intra, TokenIntraFramePrompt):
        cells = out['intra_mask_layers'].reshape(-1, views, frames, grid, grid)
        pixels = cells.repeat_interleave(patch,
                                         -2).repeat_interleave(patch, -1)
        maps.update(
            region_layers=list(intra.layers),
            region_cells=cells,
            region_pixels=pixels,
            num_regions=intra.num_regions)
    if inter is not None:
        maps.update(frame_weights=out['w'], frame_weights_raw=out['w_raw'])
        if 'inter_counts' in out:
            maps['prompt_counts'] = out['inter_counts']
    return {k: _numpy(v) if torch.is_tensor(v) else v for k, v in maps.items()}


@torch.no_grad()
def ssp_prompt_maps(backbone, clips: torch.Tensor) -> Dict:
    """SSP's frame weights and gathering maps for ``clips``.

    Args:
        backbone (VideoMamba): A VideoMamba built with ``ssp=...``.
        clips (torch.Tensor): The normalised views of one video
            ``[V, C, T, H, W]`` (one batch).

    Returns:
        dict: ``method`` ``'SSP'``, ``frame_weights``
        ``[depth - 1, V, T']`` (blocks 1 ...; rows sum to 1 over the
        ``T' = T / tubelet_size`` temporal tokens), ``gathering``
        ``[depth, V, T', h, w]`` and ``tubelet_size``.

    Raises:
        ValueError: The backbone has no SSP.
    """
    if getattr(backbone, 'ssp', None) is None:
        raise ValueError('the VideoMamba backbone has no SSP prompts '
                         '(ssp=None): nothing to show')
    _, out = backbone(clips, return_intermediates=True)
    gathering = out['ssp_gathering']
    depth, views, temporal = gathering.shape[:3]
    return dict(
        method='SSP',
        frame_weights=_numpy(out['ssp_frame_weights']),
        gathering=_numpy(
            gathering.reshape(depth, views, temporal, *backbone.grid_size)),
        tubelet_size=backbone.tubelet_size)


def highlight_pixels(frames: np.ndarray) -> np.ndarray:
    """The highlighted version of ``uint8`` RGB pixels: ``R -> 128 + R // 2``
    and ``G, B -> G // 2, B // 2`` (only pure red stays unchanged)."""
    out = frames.astype(np.uint16) // 2
    out[..., 0] += 128
    return out.astype(np.uint8)


def region_mosaic(frames: np.ndarray,
                  pixel_masks: np.ndarray,
                  scale: int = 1) -> np.ndarray:
    """The frames with their regions highlighted, as one image.

    Args:
        frames (np.ndarray): ``uint8`` RGB frames ``[T, H, W, 3]``.
        pixel_masks (np.ndarray): Region pixels ``[R, T, H, W]`` (bool),
            one row of the mosaic each (e.g. the prompted layers).
        scale (int): Integer upscaling (nearest neighbour). Defaults to 1.

    Returns:
        np.ndarray: ``uint8`` ``[R * H * scale, T * W * scale, 3]``; tile
        ``(r, t)`` is frame ``t`` with :func:`highlight_pixels` where
        ``pixel_masks[r, t]``.
    """
    tiles = np.where(pixel_masks[..., None],
                     highlight_pixels(frames)[None],
                     frames[None])  # [R, T, H, W, 3]
    rows, count, height, width = tiles.shape[:4]
    image = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * height,
                                                   count * width, 3)
    return image.repeat(scale, 0).repeat(scale, 1)


def _frame_axis(ax, count: int, label: str = 'frame') -> None:
    ax.set_xticks(range(count))
    ax.set_xlabel(label)


def plot_stop_view(frames: np.ndarray,
                   maps: Dict,
                   view: int,
                   title: str = '',
                   scale: int = 1):
    """One view: the frames with their regions, the inter-frame weights (and
    prompt counts) per frame.

    Args:
        frames (np.ndarray): ``uint8`` RGB frames ``[T, H, W, 3]``.
        maps (dict): :func:`stop_prompt_maps` of the video.
        view (int): Which view of ``maps``.
        title (str): Figure title. Defaults to ''.
        scale (int): Upscaling of the mosaic. Defaults to 1.

    Returns:
        matplotlib.figure.Figure: Axes ``regions`` (the
        :func:`region_mosaic`), ``weights`` (one bar per frame: ``w``) and,
        in paper mode, ``counts`` (one bar per frame), named by their
        ``get_label()``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    count = frames.shape[0]
    panels = ['weights'] if 'frame_weights' in maps else []
    if 'prompt_counts' in maps:
        panels.append('counts')
    rows = len(maps.get('region_layers', [])) or 1
    fig = plt.figure(
        figsize=(max(6, count * 1.2), 1.3 * rows + 2.2 * len(panels) + 0.6),
        layout='constrained')
    grid = fig.add_gridspec(
        1 + len(panels), 1, height_ratios=[1.3 * rows] + [2] * len(panels))
    ax = fig.add_subplot(grid[0], label='regions')
    if 'region_pixels' in maps:
        layers = maps['region_layers']
        ax.imshow(
            region_mosaic(frames, maps['region_pixels'][:, view], scale),
            interpolation='nearest')
        step = frames.shape[1] * scale
        ax.set_yticks([step * (r + 0.5) for r in range(len(layers))])
        ax.set_yticklabels(
            [f'layer {la}' if la != 'pixels' else 'pixels' for la in layers])
        ax.set_xticks(
            [frames.shape[2] * scale * (t + 0.5) for t in range(count)])
        ax.set_xticklabels(range(count))
        what = (f"official, mask_pooling='{maps['mask_pooling']}'"
                if 'mask_pooling' in maps else 'paper, selected patches')
        ax.set_title(f"intra-frame regions ({what}; "
                     f"num_regions={maps['num_regions']})")
    else:
        ax.imshow(np.concatenate(list(frames), axis=1))
        ax.set_title('frames (no intra-frame prompt)')
    for index, panel in enumerate(panels, 1):
        ax = fig.add_subplot(grid[index], label=panel)
        if panel == 'weights':
            ax.bar(range(count), maps['frame_weights'][view])
            ax.set_ylabel('inter-frame weight w')
        else:
            ax.bar(
                range(count), maps['prompt_counts'][view], color='tab:orange')
            ax.set_ylabel('inter-frame prompts')
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _frame_axis(ax, count)
    fig.suptitle(title)
    return fig


def plot_ssp_view(frames: np.ndarray,
                  maps: Dict,
                  view: int,
                  layer: Optional[int] = None,
                  title: str = ''):
    """One view: each frame with its gathering map (block ``layer``), the
    entropy frame weights of every block and their mean.

    Args:
        frames (np.ndarray): ``uint8`` RGB frames ``[T, H, W, 3]``.
        maps (dict): :func:`ssp_prompt_maps` of the video.
        view (int): Which view of ``maps``.
        layer (int, optional): Block of the gathering maps. Defaults to the
            last.
        title (str): Figure title. Defaults to ''.

    Returns:
        matplotlib.figure.Figure: Three subfigures with the axes ``frame
        <t>`` (the frame, then the gathering map of temporal token
        ``t // tubelet_size`` on top), ``weights`` (image
        ``[blocks - 1, T']``) and ``mean weights`` (one bar per temporal
        token), named by their ``get_label()``.
    """
    import matplotlib.pyplot as plt
    gathering = maps['gathering']
    layer = gathering.shape[0] - 1 if layer is None else layer
    weights = maps['frame_weights'][:, view]
    count, tubelet = frames.shape[0], maps['tubelet_size']
    fig = plt.figure(figsize=(max(8, count * 1.4), 7.5), layout='constrained')
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1.4, 2, 1.5])
    top.suptitle(
        f'gathering maps of block {layer} (Intra-Frame Gathering:'
        ' |contribution of each patch to its frame vector|)',
        fontsize=9)
    height, width = frames.shape[1:3]
    for t in range(count):
        ax = top.add_subplot(1, count, t + 1, label=f'frame {t}')
        ax.imshow(frames[t])
        ax.imshow(
            gathering[layer, view, t // tubelet],
            cmap='inferno',
            alpha=0.6,
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            interpolation='nearest')
        ax.set_axis_off()
        ax.set_title(str(t), fontsize=8)
    ax = middle.add_subplot(label='weights')
    image = ax.imshow(
        weights,
        aspect='auto',
        interpolation='nearest',
        extent=(-0.5, weights.shape[1] - 0.5, weights.shape[0] + 0.5, 0.5))
    middle.colorbar(image, ax=ax)
    ax.set_ylabel('block')
    _frame_axis(ax, weights.shape[1], 'temporal token')
    ax.set_title('entropy frame weights (Inter-Frame Spreading)')
    ax = bottom.add_subplot(label='mean weights')
    ax.bar(range(weights.shape[1]), weights.mean(0))
    ax.set_ylabel('mean over blocks')
    _frame_axis(ax, weights.shape[1], 'temporal token')
    fig.suptitle(title)
    return fig


def plot_summary(maps: Dict, title: str = ''):
    """All views of the video in one figure.

    STOP: the inter-frame weights (and prompt counts) of every view, and how
    often each region cell was selected (over views and frames; the first
    row of ``region_layers``). SSP: the mean entropy frame weight of every
    view and the gathering map averaged over blocks, views and frames.

    Args:
        maps (dict): :func:`stop_prompt_maps` or :func:`ssp_prompt_maps`.
        title (str): Figure title. Defaults to ''.

    Returns:
        matplotlib.figure.Figure: The figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    if maps['method'] == 'SSP':
        curves: List[Sequence] = list(maps['frame_weights'].mean(0))
        labels, heat = ('mean entropy frame weight', maps['gathering'].mean(
            (0, 1, 2)))
        heat_title = 'gathering, mean over blocks, views, frames'
    else:
        curves = list(maps.get('frame_weights', []))
        labels = 'inter-frame weight w'
        heat = (
            maps['region_cells'][0].mean(
                (0, 1)) if 'region_cells' in maps else None)
        heat_title = 'region selected (fraction of frames)'
    panels = 2 + int('prompt_counts' in maps)
    fig, axes = plt.subplots(
        1, panels, figsize=(4.5 * panels, 3.6), layout='constrained')
    for view, curve in enumerate(curves):
        axes[0].plot(
            range(len(curve)), curve, marker='o', label=f'view {view}')
    axes[0].set_ylabel(labels)
    axes[0].set_xlabel('frame')
    if curves:
        axes[0].legend(fontsize=7)
    if 'prompt_counts' in maps:
        for view, counts in enumerate(maps['prompt_counts']):
            axes[1].plot(
                range(len(counts)), counts, marker='s', label=f'view {view}')
        axes[1].set_ylabel('inter-frame prompts')
        axes[1].set_xlabel('frame')
        axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    if heat is not None:
        image = axes[-1].imshow(heat, interpolation='nearest')
        fig.colorbar(image, ax=axes[-1])
        axes[-1].set_title(heat_title, fontsize=9)
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return fig
