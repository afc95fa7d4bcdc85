# Copyright (c) mmstop contributors. All rights reserved.
"""Write mmstop's tiny synthetic video dataset (seconds, no download).

    python tools/data/generate_demo_dataset.py data/demo [--num-classes 4]

See :func:`mmstop.datasets.demo.generate_demo_dataset` for the layout
(``videos/``, ``train.txt``, ``val.txt``, ``classnames.txt``,
``captions_{train,val}.json``).
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmstop.datasets.demo import (
    DEMO_CLASSES,  # noqa: E402
    generate_demo_dataset)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic demo video dataset')
    parser.add_argument('root', help='output directory')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=4,
        help=f'motion classes, at most {len(DEMO_CLASSES)} (default: 4)')
    parser.add_argument(
        '--train-per-class', type=int, default=4, help='default: 4')
    parser.add_argument(
        '--val-per-class', type=int, default=2, help='default: 2')
    parser.add_argument(
        '--num-frames', type=int, default=16, help='default: 16')
    parser.add_argument(
        '--size',
        type=int,
        nargs='+',
        default=[64],
        metavar='S',
        help='frame size: S or W H (default: 64)')
    parser.add_argument('--fps', type=float, default=8.0, help='default: 8')
    parser.add_argument('--seed', type=int, default=0, help='default: 0')
    parser.add_argument(
        '--appearance',
        choices=['class', 'random'],
        default='class',
        help="'class': colour and shape fixed per class; 'random': only the "
        "motion tells classes apart (default: class)")
    parser.add_argument(
        '--noise',
        type=float,
        default=8.0,
        help='pixel noise std (default: 8)')
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error('--size takes one value (S) or two (W H)')
    return args


def main(argv=None):
    args = parse_args(argv)
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    out = generate_demo_dataset(
        args.root,
        num_classes=args.num_classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        num_frames=args.num_frames,
        size=size,
        fps=args.fps,
        seed=args.seed,
        appearance=args.appearance,
        noise=args.noise)
    n_train = args.num_classes * args.train_per_class
    n_val = args.num_classes * args.val_per_class
    print(f'wrote {n_train} train + {n_val} val videos of classes '
          f'{list(out["classes"])} to {out["root"]}')
    for key in ('train_ann', 'val_ann', 'classnames_file', 'captions_train',
                'captions_val'):
        print(f'  {key}: {out[key]}')
    return out


if __name__ == '__main__':
    main()
