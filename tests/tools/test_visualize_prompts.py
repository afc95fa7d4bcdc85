# Copyright (c) mmstop contributors. All rights reserved.
"""tools/visualize_prompts.py (issue 11): the images show what the model's
own forward computed: the highlighted cells are the region mask
(``num_regions`` per frame), the bars the inter-frame weights and prompt
counts, the SSP maps the gathering and entropy weights."""
import os.path as osp

import numpy as np
import pytest
import torch
from helpers.configs import (config_model, config_path, save_checkpoint,
                             small_ssp_config)
from mmengine.config import Config
from PIL import Image

from mmstop.datasets.demo import generate_demo_dataset
from mmstop.visualization import (plot_ssp_view, plot_stop_view,
                                  ssp_prompt_maps, stop_prompt_maps)

pytestmark = pytest.mark.usefixtures('one_thread')

VIDEO = 'data/demo/videos/val_0000.mp4'


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('tools/visualize_prompts.py')


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate_demo_dataset(
        'data/demo', num_classes=4, train_per_class=0, val_per_class=1)
    return tmp_path


def checkpoint(config, path, randomize_ssp=False):
    model = config_model(config)
    if randomize_ssp:  # SSP starts at zero: no gathering to show
        with torch.no_grad():
            for p in model.backbone.ssp.parameters():
                p.normal_(0, 0.3)
    return save_checkpoint(model, path)


def forward(tool, config, ckpt):
    """The model's own intermediates for the views of VIDEO."""
    cfg = Config.fromfile(config)
    model = tool.load_model(cfg, ckpt, 'cpu')
    clips, frames = tool.video_views(model, cfg, VIDEO)
    with torch.no_grad():
        _, out = model.backbone(clips, return_intermediates=True)
    return model, clips, frames, out


def changed_pixels(path, frames, scale):
    """Which pixels of each tile of a regions image differ from the frame:
    ``[rows, T, H, W]``."""
    image = np.asarray(Image.open(path).convert('RGB'))
    frames_up = frames.repeat(scale, 1).repeat(scale, 2)  # [T, Hs, Ws, 3]
    count, height, width = frames_up.shape[:3]
    rows = image.shape[0] // height
    tiles = image.reshape(rows, height, count, width,
                          3).transpose(0, 2, 1, 3, 4)
    changed = (tiles != frames_up[None]).any(-1)
    return changed[:, :, ::scale, ::scale]


def bar_heights(fig, label):
    [ax] = [a for a in fig.axes if a.get_label() == label]
    return np.array([p.get_height() for p in ax.patches])


@pytest.mark.parametrize('config',
                         ['stop_clip_demo.py', 'stop_clip_paper_demo.py'])
def test_stop_regions_and_weights(tool, demo, config):
    config = config_path(config)
    ckpt = checkpoint(config, 'stop.pth')
    written = tool.main([config, ckpt, VIDEO, '--out-dir', 'viz'])
    model, clips, frames, out = forward(tool, config, ckpt)
    views, count = frames.shape[:2]
    assert sorted(osp.basename(p) for p in written) == sorted(
        [f'view{v}.png' for v in range(views)] +
        [f'view{v}_regions.png'
         for v in range(views)] + ['summary.png', 'values.npz'])
    values = np.load('viz/values.npz')
    np.testing.assert_array_equal(values['frames'], frames)
    np.testing.assert_allclose(values['frame_weights'], out['w'])
    intra = model.backbone.intra_prompt
    paper = 'intra_mask_layers' in out
    if paper:  # one row per prompted layer, the selected patches
        cells = out['intra_mask_layers'].reshape(-1, views, count, 4, 4)
        patch = 8
        pixels = cells.repeat_interleave(patch,
                                         -2).repeat_interleave(patch, -1)
    else:  # the module's own mapping of cells to pixels (residue lattice)
        cells = out['mask'][None]
        pixels = intra.expand_mask(out['mask'])[:, :, 0][None]
    for view in range(views):
        changed = changed_pixels(f'viz/view{view}_regions.png', frames[view],
                                 int(values['scale']))
        np.testing.assert_array_equal(changed, pixels[:, view].numpy())
        # the cells whose pixels are highlighted (a pixel (8a+u, 8c+v) of
        # patch (a, c) in paper mode, of residue cell (u, v) officially):
        # num_regions per frame
        cell_changed = (
            changed.reshape(len(changed), count, 4, 8, 4, 8).any(
                (3,
                 5)) if paper else changed.reshape(1, count, 8, 4, 8, 4).any(
                     (2, 4)))
        np.testing.assert_array_equal(cell_changed, cells[:, view].numpy())
        assert (cell_changed.sum((2, 3)) == intra.num_regions).all()
    maps = stop_prompt_maps(model.backbone, clips)
    fig = plot_stop_view(frames[0], maps, 0)
    np.testing.assert_allclose(
        bar_heights(fig, 'weights'), out['w'][0].numpy(), rtol=1e-6)
    if paper:
        np.testing.assert_array_equal(
            bar_heights(fig, 'counts'), out['inter_counts'][0].numpy())
        np.testing.assert_array_equal(values['prompt_counts'],
                                      out['inter_counts'])


def test_ssp_gathering_and_entropy_weights(tool, demo):
    config = small_ssp_config(demo, depth=4)
    ckpt = checkpoint(config, 'ssp.pth', randomize_ssp=True)
    written = tool.main(
        [config, ckpt, VIDEO, '--out-dir', 'viz', '--layer', '3'])
    assert 'view5.png' in {osp.basename(p) for p in written}  # 2 x 3 views
    model, clips, frames, out = forward(tool, config, ckpt)
    values = np.load('viz/values.npz')
    gathering = out['ssp_gathering'].reshape(4, 6, 4, 4, 4).numpy()
    np.testing.assert_allclose(values['gathering'], gathering, rtol=1e-5)
    np.testing.assert_allclose(
        values['frame_weights'], out['ssp_frame_weights'], rtol=1e-6)
    assert gathering.max() > 0
    maps = ssp_prompt_maps(model.backbone, clips)
    fig = plot_ssp_view(frames[2], maps, 2, layer=3)
    axes = {a.get_label(): a for sub in fig.subfigs for a in sub.axes}
    for t in range(4):
        np.testing.assert_allclose(
            axes[f'frame {t}'].images[1].get_array(),
            gathering[3, 2, t],
            rtol=1e-5)
    np.testing.assert_allclose(
        axes['weights'].images[0].get_array(),
        out['ssp_frame_weights'][:, 2],
        rtol=1e-5)
