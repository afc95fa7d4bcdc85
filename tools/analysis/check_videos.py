# Copyright (c) mmstop contributors. All rights reserved.
"""Find the missing and undecodable videos of an mmstop config's dataset.

    python tools/analysis/check_videos.py CONFIG [--split train|val|test]
        [--decoder decord|opencv|pyav] [--output-file invalid-video.txt]
        [--nproc N] [--remove-corrupted-videos] [--cfg-options ...]

The options and the output are those of MMAction2's
``tools/analysis_tools/check_videos.py``, which only accepts datasets whose
``type`` is ``'VideoDataset'``. mmstop's ``VideoClsDataset`` is a
``VideoDataset`` with checked annotations; ``VideoTextRetrievalDataset``
reads JSON captions. This tool builds the config's dataset (without its
existence check, so missing files are reported rather than stopping the
load), writes the video files it lists to a plain ``VideoDataset`` list and
runs MMAction2's tool on that, unchanged: it decodes the first, the last
and three random frames of every video and writes the paths that fail to
``--output-file``.
"""
import argparse
import os.path as osp
import sys
import tempfile
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmaction.registry import DATASETS  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
from mmstop.utils.config import load_config  # noqa: E402
from mmstop.utils.mmaction_tools import run_mmaction_tool  # noqa: E402

#: The existence check of each mmstop dataset, switched off to list files.
EXISTENCE_CHECKS = dict(
    VideoClsDataset='check_files', VideoTextRetrievalDataset='check_videos')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--split',
        default='train',
        choices=['train', 'val', 'test'],
        help='which dataloader\'s dataset (default: train)')
    parser.add_argument(
        '--decoder', default='decord', choices=['decord', 'opencv', 'pyav'])
    parser.add_argument(
        '--output-file',
        default='invalid-video.txt',
        help='where the failing paths are written')
    parser.add_argument(
        '--nproc',
        type=int,
        default=1,
        help='processes checking videos (default: 1)')
    parser.add_argument(
        '--remove-corrupted-videos',
        action='store_true',
        help='delete the videos that fail')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    return parser.parse_args(argv)


def dataset_videos(cfg: Config, split: str) -> List[str]:
    """The video files of the ``split`` dataset of ``cfg``, in order, each
    once."""
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    dataset_cfg = dict(cfg[f'{split}_dataloader']['dataset'], pipeline=[])
    check = EXISTENCE_CHECKS.get(dataset_cfg['type'])
    if check:
        dataset_cfg[check] = False
    dataset = DATASETS.build(dataset_cfg)
    videos = []
    for index in range(len(dataset)):
        name = dataset.get_data_info(index)['filename']
        if name not in videos:
            videos.append(name)
    return videos


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    videos = dataset_videos(cfg, args.split)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = osp.join(tmp, 'videos.txt')
        with open(ann_file, 'w') as f:
            f.writelines(f'{osp.abspath(v)} 0\n' for v in videos)
        plain = Config(
            dict(
                default_scope='mmaction',
                **{
                    f'{args.split}_dataloader':
                    dict(
                        dataset=dict(
                            type='VideoDataset',
                            ann_file=ann_file,
                            data_prefix=dict(video=''),
                            pipeline=[]))
                }))
        config = osp.join(tmp, 'videos_config.py')
        plain.dump(config)
        tool_args = [
            config, '--split', args.split, '--decoder', args.decoder,
            '--output-file', args.output_file, '--nproc',
            str(args.nproc)
        ]
        if args.remove_corrupted_videos:
            tool_args.append('--remove-corrupted-videos')
        run_mmaction_tool('analysis_tools/check_videos.py', tool_args)


if __name__ == '__main__':
    main()
