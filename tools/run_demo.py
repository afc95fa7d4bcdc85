# Copyright (c) mmstop contributors. All rights reserved.
"""The built-in default job: train and test a small STOP model, print top-1.

1. Generates the synthetic demo dataset (``mmstop.datasets.demo``) under
   ``--data-root`` unless it is there already;
2. trains ``--config`` (default ``configs/stop_clip_demo.py``: STOP in
   official mode on a tiny random CLIP, so nothing is downloaded) with
   ``tools/train.py``;
3. tests the last checkpoint with ``tools/test.py`` (two temporal views per
   video, probabilities averaged) and prints the top-1 accuracy.

Usage::

    python tools/run_demo.py [--config CONFIG] [--work-dir DIR] \
        [--data-root DIR]

Any demo config whose datasets read ``data/demo`` works, e.g.
``configs/ssp_videomamba_demo.py``.
"""
import argparse
import os
import os.path as osp
import pickle
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_DATA_ROOT = 'data/demo'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--config',
        default=osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py'))
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/<config name>')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='demo dataset directory (generated if missing)')
    return parser.parse_args(argv)


def data_options(data_root):
    """--cfg-options that point a demo config at ``data_root``."""
    if osp.normpath(data_root) == osp.normpath(DEFAULT_DATA_ROOT):
        return []
    video = osp.join(data_root, 'videos')
    names = osp.join(data_root, 'classnames.txt')
    options = []
    for loader, ann in (('train_dataloader', 'train.txt'),
                        ('val_dataloader', 'val.txt'),
                        ('test_dataloader', 'val.txt')):
        options += [f'{loader}.dataset.ann_file={osp.join(data_root, ann)}',
                    f'{loader}.dataset.data_prefix.video={video}',
                    f'{loader}.dataset.classnames_file={names}']
    return options


def demo_options(config, data_root):
    """--cfg-options that point ``config`` (a demo config) at ``data_root``,
    class names of text-classifier heads included."""
    options = data_options(data_root)
    if options:
        sys.path.insert(0, REPO_ROOT)
        import mmstop  # noqa: F401  (registers the config's types)
        from mmengine.config import Config
        head = Config.fromfile(config).model.get('cls_head', {})
        if 'class_names' in head:  # text-classifier heads read them too
            options.append('model.cls_head.class_names=' +
                           osp.join(data_root, 'classnames.txt'))
    return options


def run(cmd, env):
    print('$ ' + ' '.join(cmd), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=os.getcwd(), env=env)
    if proc.returncode != 0:
        sys.exit(f'error: {cmd[1]} failed with exit status {proc.returncode}')
    print(f'  ({time.time() - start:.0f} s)', flush=True)


def main(argv=None):
    args = parse_args(argv)
    env = dict(os.environ)
    env.setdefault('HF_HUB_OFFLINE', '1')  # nothing here needs the network
    # one OpenMP thread unless asked otherwise: the tiny model is many small
    # ops (no faster with 2 threads, and 2 stall when the other core is
    # busy), and the result then does not depend on the machine's core count
    env.setdefault('OMP_NUM_THREADS', '1')
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('work_dirs', name)

    if not osp.isfile(osp.join(args.data_root, 'train.txt')):
        sys.path.insert(0, REPO_ROOT)
        from mmstop.datasets import generate_demo_dataset
        info = generate_demo_dataset(args.data_root)
        print(f"generated the demo dataset in {info['root']}: "
              f"{len(info['classes'])} classes", flush=True)

    cfg_options = demo_options(args.config, args.data_root)
    python = sys.executable
    tools = osp.join(REPO_ROOT, 'tools')
    run([python, osp.join(tools, 'train.py'), args.config, '--work-dir',
         work_dir] + (['--cfg-options'] + cfg_options if cfg_options else []),
        env)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    dump = osp.join(work_dir, 'test', 'predictions.pkl')
    run([python, osp.join(tools, 'test.py'), args.config, checkpoint,
         '--work-dir', osp.join(work_dir, 'test'), '--dump', dump] +
        (['--cfg-options'] + cfg_options if cfg_options else []), env)

    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    correct = sum(int(p['pred_label'].item() == p['gt_label'].item())
                  for p in predictions)
    accuracy = 100.0 * correct / len(predictions)
    print(f'\n{name}: top-1 accuracy {accuracy:.1f}% '
          f'({correct}/{len(predictions)} test videos), '
          f'checkpoint {checkpoint}')


if __name__ == '__main__':
    main()
