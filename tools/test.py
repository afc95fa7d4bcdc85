# Copyright (c) mmstop contributors. All rights reserved.
"""Test (evaluate) a checkpoint with the config's test loop and evaluator.

Importing :mod:`mmstop` first registers every mmstop component and applies the
stack work-arounds of :mod:`mmstop.compat` (MMEngine checkpoints load under
torch >= 2.6, torchrun on CPU).

Examples::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--dump out.pkl]
    python tools/test.py CONFIG   # no checkpoint: the model's own init
    bash tools/dist_test.sh CONFIG CHECKPOINT 2 [ARGS]
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    # Running from a checkout: use its mmstop even if not installed.
    sys.path.insert(0, REPO_ROOT)

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmaction.registry import RUNNERS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) an mmstop / MMAction2 model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='checkpoint file; without one the model is tested with the '
        'weights its init_weights gives it (e.g. a backbone\'s pretrained= '
        'checkpoint: zero-shot CLIP, configs/clip_zeroshot_motion.py)')
    parser.add_argument(
        '--work-dir',
        help='where the log and metrics go; defaults to the config\'s '
        'work_dir, else ./work_dirs/<config name>')
    parser.add_argument(
        '--dump',
        metavar='FILE.pkl',
        help='also dump the predictions to this pickle file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (nested keys with dots, '
        'lists as key="[a,b]")')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_test.sh passes pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line options to ``cfg``."""
    cfg.launcher = args.launcher
    cfg.setdefault('default_scope', 'mmaction')
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.dump is not None:
        if not args.dump.endswith(('.pkl', '.pickle')):
            raise SystemExit(
                f'error: --dump must name a .pkl/.pickle file, got '
                f'{args.dump}')
        dump_metric = dict(type='DumpResults', out_file_path=args.dump)
        evaluator = cfg.test_evaluator
        if isinstance(evaluator, (list, tuple)):
            cfg.test_evaluator = [*evaluator, dump_metric]
        else:
            cfg.test_evaluator = [evaluator, dump_metric]

    cfg.load_from = args.checkpoint
    cfg.resume = False
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file {args.config} does not exist')
    if args.checkpoint is not None and '://' not in args.checkpoint and \
            not osp.isfile(args.checkpoint):
        raise SystemExit(
            f'error: checkpoint file {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if args.checkpoint is None:
        # MMEngine initialises weights in train() only
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.init_weights()
    runner.test()


if __name__ == '__main__':
    main()
