# Copyright (c) mmstop contributors. All rights reserved.
"""Train a model from an mmstop (or any MMAction2) config with MMEngine.

Importing :mod:`mmstop` first registers every mmstop component and applies the
stack work-arounds of :mod:`mmstop.compat` (checkpoint loading for resume,
torchrun on CPU), so configs work with or without ``custom_imports``.

Examples::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
    python tools/train.py CONFIG --cfg-options train_cfg.max_epochs=1
    bash tools/dist_train.sh CONFIG 2 [ARGS]   # torchrun, --launcher pytorch
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
from mmengine.runner import Runner  # noqa: E402

from mmaction.registry import RUNNERS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmstop / MMAction2 model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go; defaults to the config\'s '
        'work_dir, else ./work_dirs/<config name>')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume training (model, optimizer, scheduler, epoch/iter, '
        'random states): from CHECKPOINT if given, else from the newest '
        'intact checkpoint in the work dir (a truncated or corrupt latest '
        'one is skipped with a warning)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (AmpOptimWrapper); needs a GPU')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        default=None,
        help='autocast dtype of --amp (default: the config\'s '
        'optim_wrapper.dtype, else its top-level amp_dtype, else float16 '
        'as MMAction2); bfloat16 gets a fixed loss scale of 1.0, float16 '
        'dynamic loss scaling')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by actual / auto_scale_lr.'
        'base_batch_size (the config must define auto_scale_lr)')
    parser.add_argument(
        '--seed',
        type=int,
        default=None,
        help='random seed (overrides '
        'randomness.seed)')
    parser.add_argument(
        '--diff-rank-seed',
        action='store_true',
        help='give every rank a different seed')
    parser.add_argument(
        '--deterministic',
        action='store_true',
        help='deterministic cuDNN / torch algorithms')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (nested keys with dots, '
        'lists as key="[a,b]"); applied last')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (tools/dist_train.sh passes pytorch)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _amp_device_available() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line options to ``cfg`` (``--cfg-options`` last)."""
    cfg.launcher = args.launcher
    cfg.setdefault('default_scope', 'mmaction')

    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.amp:
        if not _amp_device_available():
            raise SystemExit(
                'error: --amp needs a GPU (MMEngine\'s AmpOptimWrapper runs '
                'on CUDA, NPU, MLU or MUSA devices); none is available here')
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise SystemExit(
                f'error: --amp cannot replace the custom optim_wrapper type '
                f'{wrapper_type!r}; set AmpOptimWrapper in the config')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        dtype = (
            args.amp_dtype or cfg.optim_wrapper.get('dtype', None)
            or cfg.get('amp_dtype', None) or 'float16')
        cfg.optim_wrapper.dtype = dtype
        # bf16 has fp32's range: no loss scaling (as SSP's official bf16)
        cfg.optim_wrapper.setdefault('loss_scale',
                                     1.0 if dtype == 'bfloat16' else 'dynamic')
    elif args.amp_dtype is not None:
        raise SystemExit('error: --amp-dtype needs --amp')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume) and '://' not in args.resume:
            raise SystemExit(
                f'error: --resume checkpoint {args.resume} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise SystemExit(
                'error: --auto-scale-lr needs auto_scale_lr = dict('
                'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True

    randomness = cfg.get('randomness', None)
    if randomness is None:
        cfg.randomness = dict(
            seed=args.seed,
            diff_rank_seed=args.diff_rank_seed,
            deterministic=args.deterministic)
    else:
        if args.seed is not None:
            randomness.seed = args.seed
        if args.diff_rank_seed:
            randomness.diff_rank_seed = True
        if args.deterministic:
            randomness.deterministic = True

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('resume', False) and cfg.get('load_from', None) is None:
        cfg.load_from = resolve_auto_resume(cfg.work_dir)
    return cfg


def resolve_auto_resume(work_dir: str):
    """The checkpoint an automatic resume continues from: the newest intact
    one of ``work_dir``; a truncated or corrupt newer one is skipped with a
    warning naming it. None when the work dir has no checkpoint at all
    (MMEngine then trains from scratch)."""
    from mmengine.logging import print_log

    from mmstop.utils.checkpoint import (checkpoint_problem,
                                         find_resumable_checkpoint)
    found = find_resumable_checkpoint(work_dir)
    if found is not None:
        print_log(
            f'--resume: resuming from the newest intact checkpoint '
            f'{found}',
            logger='current')
        return found
    record = osp.join(work_dir, 'last_checkpoint')
    last = ''
    if osp.isfile(record):
        with open(record) as f:
            last = f.read().strip()
    if last:
        raise SystemExit(
            f'error: --resume: {work_dir} holds no intact checkpoint (the '
            f'latest, {last}: {checkpoint_problem(last)}); pass --resume '
            'CHECKPOINT or start without --resume')
    return None


def build_runner(cfg: Config):
    """The default Runner, or ``RUNNERS.build`` when ``runner_type`` is set."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
