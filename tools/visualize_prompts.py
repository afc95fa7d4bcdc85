# Copyright (c) mmstop contributors. All rights reserved.
"""Draw where the prompts of a STOP or SSP model act on a video.

    python tools/visualize_prompts.py CONFIG CHECKPOINT VIDEO --out-dir DIR
        [--layer L] [--device cpu] [--cfg-options ...]

The video goes through the config's test pipeline; its views (e.g. 2 clips
x 3 crops) run through the backbone as one batch, as in the test step, with
``return_intermediates=True`` (:mod:`mmstop.visualization.prompts`). Written
to ``DIR``:

* ``view<k>.png`` per view. STOP: every sampled frame with its intra-frame
  regions highlighted (official pixel prompt: the pixels of the
  ``num_regions`` selected cells, a periodic lattice with the official
  ``mask_pooling='residue'``; paper token prompt: the selected patches of
  every prompted layer, one row each), then the inter-frame weight of every
  frame and, in paper mode, its dynamic number of inter-frame prompts.
  SSP: every frame with its gathering map (block ``--layer``, default the
  last), the entropy frame weights of every block and their mean;
* ``view<k>_regions.png`` (STOP): the highlighted frames pixel for pixel
  (``scale`` times larger, nearest neighbour), one row per region layer;
* ``summary.png``: all views together;
* ``values.npz``: the values drawn (``frames`` ``[V, T, H, W, 3]``,
  ``scale`` and the maps).

The checkpoint is loaded strictly. A STOP recognition config whose
class-name file is absent is built with placeholder class names (the
prompts do not depend on them).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmaction.apis import init_recognizer  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
from mmstop import visualization as vis  # noqa: E402
from mmstop.datasets.inference import load_test_sample  # noqa: E402
from mmstop.models import STOPCLIP, VideoMamba  # noqa: E402
from mmstop.utils.checkpoint import load_checkpoint_checked  # noqa: E402
from mmstop.utils.config import load_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('video', help='video file')
    parser.add_argument(
        '--out-dir', required=True, help='where the images go (created)')
    parser.add_argument(
        '--layer',
        type=int,
        default=None,
        help='SSP: block of the gathering maps (default: '
        'the last)')
    parser.add_argument(
        '--device', default='cpu', help="'cpu' (default), 'cuda:0', ...")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    return parser.parse_args(argv)


def load_model(cfg: Config, checkpoint: str, device: str):
    """``init_recognizer`` (also for retrieval models) and the checkpoint
    loaded strictly."""
    head = cfg.model.get('cls_head') or {}
    names = head.get('class_names')
    if isinstance(names, str) and not osp.isfile(names):
        count = head.get('num_classes') or 1
        head.class_names = [f'class {i}' for i in range(count)]
    model = init_recognizer(cfg, None, device=device)
    load_checkpoint_checked(model, checkpoint, hint='a matching config')
    return model.eval()


def video_views(model, cfg: Config, video: str):
    """The video through the test pipeline and the data preprocessor.

    Returns:
        tuple: The normalised clips ``[V, C, T, H, W]`` and the frames as
        read, ``uint8`` ``[V, T, H, W, 3]``.
    """
    data = load_test_sample(cfg, video)
    raw = data['inputs']
    with torch.no_grad():
        inputs = model.data_preprocessor(pseudo_collate([data]),
                                         False)['inputs']
    if raw.dim() == 4:  # NCHW (retrieval): one clip [T, C, H, W]
        raw = raw.permute(1, 0, 2, 3)[None]
        inputs = inputs.transpose(1, 2)
    clips = inputs.reshape((-1, ) + inputs.shape[-4:])
    frames = raw.permute(0, 2, 3, 4, 1).clamp(0, 255).to(torch.uint8)
    return clips, frames.cpu().numpy()


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if not osp.isfile(args.video):
        raise FileNotFoundError(f'video {args.video} does not exist')
    model = load_model(cfg, args.checkpoint, args.device)
    backbone = model.backbone
    clips, frames = video_views(model, cfg, args.video)
    if isinstance(backbone, STOPCLIP):
        maps = vis.stop_prompt_maps(backbone, clips)
    elif isinstance(backbone, VideoMamba):
        maps = vis.ssp_prompt_maps(backbone, clips)
    else:
        raise ValueError(f'{args.config}: the backbone is a '
                         f'{type(backbone).__name__}; prompts are drawn for '
                         'STOPCLIP (STOP) and VideoMamba with SSP')
    os.makedirs(args.out_dir, exist_ok=True)
    scale = max(1, 128 // frames.shape[2])
    name = osp.basename(args.config)
    written = []

    def save(fig, filename):
        import matplotlib.pyplot as plt
        path = osp.join(args.out_dir, filename)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    for view in range(frames.shape[0]):
        title = f'{name}: {osp.basename(args.video)}, view {view}'
        if maps['method'] == 'STOP':
            save(
                vis.plot_stop_view(frames[view], maps, view, title, scale),
                f'view{view}.png')
            if 'region_pixels' in maps:
                import matplotlib.pyplot as plt
                path = osp.join(args.out_dir, f'view{view}_regions.png')
                plt.imsave(
                    path,
                    vis.region_mosaic(frames[view],
                                      maps['region_pixels'][:, view], scale))
                written.append(path)
        else:
            save(
                vis.plot_ssp_view(frames[view], maps, view, args.layer, title),
                f'view{view}.png')
    save(
        vis.plot_summary(maps, f'{name}: {osp.basename(args.video)}'),
        'summary.png')
    values: Dict = {k: v for k, v in maps.items() if isinstance(v, np.ndarray)}
    path = osp.join(args.out_dir, 'values.npz')
    np.savez_compressed(path, frames=frames, scale=scale, **values)
    written.append(path)
    print('\n'.join(written))
    return written


if __name__ == '__main__':
    main()
