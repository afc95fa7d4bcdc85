# Copyright (c) mmstop contributors. All rights reserved.
r"""The built-in default job: prompt tuning against frozen baselines.

1. Generates the synthetic motion dataset under ``--data-root`` (default
   ``data/motion``; :data:`MOTION_DATA`: 6 classes, moving up / down /
   right / left, growing, shrinking, with colour and shape drawn per video,
   so only the motion and its temporal order tell the classes apart) unless
   it is there already;
2. trains every method of :data:`METHODS` with ``tools/train.py`` (zero-shot
   CLIP trains nothing) and tests it with ``tools/test.py``: STOP (official
   and paper mode) on mmstop's tiny pretrained CLIP against zero-shot CLIP
   and a linear probe of the same frozen CLIP, and SSP on the tiny
   pretrained VideoMamba against a linear probe of the same frozen
   VideoMamba (``checkpoints/README.md``);
3. prints one table: method, trainable parameters, test top-1.

``--config CONFIG`` runs one config instead (train, test, print top-1); its
default data root is the demo dataset ``data/demo``, e.g. the
random-backbone smoke demos ``configs/stop_clip_demo.py`` and
``configs/ssp_videomamba_demo.py``.

Usage::

    python tools/run_demo.py [--seed N] [--methods stop ssp ...] \
        [--videos-per-class TRAIN TEST] [--json OUT]
    python tools/run_demo.py --config CONFIG [--work-dir DIR] \
        [--data-root DIR]
"""
import argparse
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_DATA_ROOT = 'data/demo'
MOTION_DATA_ROOT = 'data/motion'
#: ``generate_demo_dataset`` arguments of the default job's dataset (the
#: ``*_motion.py`` configs read ``data/motion``).
MOTION_DATA = dict(
    num_classes=6,
    train_per_class=32,
    val_per_class=16,
    appearance='random',
    seed=0)
#: The default job: (key, method, config, trained). Frozen baselines first.
METHODS = (
    ('zeroshot', 'zero-shot CLIP (frozen tiny CLIP)',
     'clip_zeroshot_motion.py', False),
    ('clip-probe', 'linear probe (frozen tiny CLIP)', 'clip_probe_motion.py',
     True),
    ('stop', 'STOP, official mode (frozen tiny CLIP)', 'stop_clip_motion.py',
     True),
    ('stop-paper', 'STOP, paper mode (frozen tiny CLIP)',
     'stop_clip_paper_motion.py', True),
    ('videomamba-probe', 'linear probe (frozen tiny VideoMamba)',
     'videomamba_probe_motion.py', True),
    ('ssp', 'SSP (frozen tiny VideoMamba)', 'ssp_videomamba_motion.py', True),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--config',
        default=None,
        help='run this one config instead of the default job')
    parser.add_argument(
        '--work-dir',
        default=None,
        help='default: work_dirs/<config name>, or '
        'work_dirs/default_job/seed_<seed> for the job')
    parser.add_argument(
        '--data-root',
        default=None,
        help=f'dataset directory, generated if missing '
        f'(default: {MOTION_DATA_ROOT} for the job, '
        f'{DEFAULT_DATA_ROOT} with --config)')
    parser.add_argument(
        '--methods',
        nargs='+',
        metavar='KEY',
        choices=[m[0] for m in METHODS],
        help='a subset of the job: ' + ', '.join(m[0] for m in METHODS))
    parser.add_argument(
        '--seed',
        type=int,
        default=None,
        help="training seed (randomness.seed); default: "
        "the configs' (0)")
    parser.add_argument(
        '--videos-per-class',
        nargs=2,
        type=int,
        metavar=('TRAIN', 'TEST'),
        default=None,
        help='motion dataset size when it is generated '
        '(default: {train_per_class} {val_per_class}); a '
        'data root generated with other sizes is refused'.format(
            **MOTION_DATA))
    parser.add_argument(
        '--jobs',
        type=int,
        default=2,
        help='methods trained side by side (one OpenMP '
        'thread each)')
    parser.add_argument(
        '--json',
        default=None,
        help='also write the job\'s results to this file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='extra --cfg-options for every config run')
    return parser.parse_args(argv)


def data_options(data_root):
    """--cfg-options that point a demo config at ``data_root``."""
    if osp.normpath(data_root) == osp.normpath(DEFAULT_DATA_ROOT):
        return []
    video = osp.join(data_root, 'videos')
    names = osp.join(data_root, 'classnames.txt')
    options = []
    for loader, ann in (('train_dataloader', 'train.txt'),
                        ('val_dataloader', 'val.txt'), ('test_dataloader',
                                                        'val.txt')):
        options += [
            f'{loader}.dataset.ann_file={osp.join(data_root, ann)}',
            f'{loader}.dataset.data_prefix.video={video}',
            f'{loader}.dataset.classnames_file={names}'
        ]
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


def motion_options(config, data_root):
    """--cfg-options that point a ``*_motion.py`` config at ``data_root``:
    its top-level data variables, from which the configs derive every
    dataset and class-name field."""
    if osp.normpath(data_root) == osp.normpath(MOTION_DATA_ROOT):
        return []
    sys.path.insert(0, REPO_ROOT)
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    values = dict(
        data_root=osp.join(data_root, 'videos'),
        ann_file_train=osp.join(data_root, 'train.txt'),
        ann_file_val=osp.join(data_root, 'val.txt'),
        ann_file_test=osp.join(data_root, 'val.txt'),
        classnames_file=osp.join(data_root, 'classnames.txt'))
    return [f'{k}={v}' for k, v in values.items() if k in cfg]


def run(cmd, env, log=None):
    """Run ``cmd``; exit with an error if it fails. With ``log``, its output
    goes to that file (the tail is shown on failure)."""
    print('$ ' + ' '.join(cmd), flush=True)
    start = time.time()
    if log is None:
        proc = subprocess.run(cmd, cwd=os.getcwd(), env=env)
    else:
        os.makedirs(osp.dirname(log), exist_ok=True)
        with open(log, 'w') as f:
            proc = subprocess.run(
                cmd,
                cwd=os.getcwd(),
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        if log is not None:
            with open(log) as f:
                print(f.read()[-4000:], file=sys.stderr)
        sys.exit(f'error: {cmd[1]} failed with exit status {proc.returncode}')
    print(
        f'  ({time.time() - start:.0f} s{", log " + log if log else ""})',
        flush=True)
    return time.time() - start


def top1(dump):
    """Top-1 accuracy (%) and test-video count of a ``--dump`` file."""
    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    correct = sum(
        int(p['pred_label'].item() == p['gt_label'].item())
        for p in predictions)
    return 100.0 * correct / len(predictions), len(predictions)


def trainable_parameters(config, cfg_options=()):
    """Number of parameters of the config's model that require gradients
    (the model is built, no weights are read)."""
    sys.path.insert(0, REPO_ROOT)
    import mmstop  # noqa: F401  (registers the config's types)
    from mmengine.config import DictAction
    from mmengine.registry import init_default_scope

    from mmstop.registry import MODELS
    from mmstop.utils.complexity import count_params
    from mmstop.utils.config import load_config
    parsed = argparse.Namespace(options=None)
    if cfg_options:
        DictAction(
            option_strings=[], dest='options')(None, parsed, list(cfg_options))
    cfg = load_config(config, parsed.options)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    return count_params(MODELS.build(cfg.model))[1]


def run_method(config, work_dir, cfg_options, env, trained=True):
    """Train (if ``trained``) and test one config; return its top-1 (%),
    test-video count and seconds."""
    python = sys.executable
    tools = osp.join(REPO_ROOT, 'tools')
    options = ['--cfg-options'] + list(cfg_options) if cfg_options else []
    seconds = 0.
    checkpoint = []
    if trained:
        seconds += run(
            [
                python,
                osp.join(tools, 'train.py'), config, '--work-dir', work_dir
            ] + options,
            env,
            log=osp.join(work_dir, 'train.log'))
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = [f.read().strip()]
    dump = osp.join(work_dir, 'test', 'predictions.pkl')
    seconds += run(
        [python, osp.join(tools, 'test.py'), config] + checkpoint +
        ['--work-dir',
         osp.join(work_dir, 'test'), '--dump', dump] + options,
        env,
        log=osp.join(work_dir, 'test.log'))
    accuracy, count = top1(dump)
    return accuracy, count, seconds


def format_table(rows):
    """The job's table: method, trainable parameters, top-1."""
    lines = [f"{'method':<42} {'trainable params':>16} {'top-1':>7}"]
    for row in rows:
        lines.append(f"{row['method']:<42} {row['trainable_params']:>16,} "
                     f"{row['top1']:>6.1f}%")
    return '\n'.join(lines)


def run_job(args, env):
    """The default job (module docstring); returns the result rows."""
    data_root = args.data_root or MOTION_DATA_ROOT
    ensure_dataset(data_root, sizes=args.videos_per_class)
    seed = 0 if args.seed is None else args.seed
    work_root = args.work_dir or osp.join('work_dirs', 'default_job',
                                          f'seed_{seed}')
    selected = [m for m in METHODS if not args.methods or m[0] in args.methods]

    def options_of(config):
        options = motion_options(config, data_root) + list(args.cfg_options)
        if args.seed is not None:
            options.append(f'randomness.seed={args.seed}')
        return options

    # configs are read here, in this thread (MMEngine's config parsing is
    # not thread-safe); the threads below only wait for subprocesses
    configs = {m[0]: osp.join(REPO_ROOT, 'configs', m[2]) for m in selected}
    options = {key: options_of(config) for key, config in configs.items()}

    def train_and_test(entry):
        key, method, _, trained = entry
        print(f'== {method}', flush=True)
        return run_method(configs[key], osp.join(work_root, key), options[key],
                          env, trained)

    # each method is its own single-threaded process: with --jobs 2 two of
    # them run side by side, and the results do not change
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(train_and_test, selected))
    rows = []
    for (key, method, config_name, _), (accuracy, count,
                                        seconds) in zip(selected, results):
        rows.append(
            dict(
                key=key,
                method=method,
                config=config_name,
                trainable_params=trainable_parameters(configs[key],
                                                      options[key]),
                top1=accuracy,
                test_videos=count,
                seconds=round(seconds, 1)))
    print(
        f'\nseed {seed}, {rows[0]["test_videos"] if rows else 0} test '
        f'videos ({data_root}):\n' + format_table(rows),
        flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(seed=seed, data_root=data_root, rows=rows), f, indent=1)
    return rows


def ensure_dataset(data_root, motion=True, sizes=None):
    """Generate the motion dataset (:data:`MOTION_DATA`, with ``sizes`` =
    (train, test) videos per class if given) or, with ``motion=False``, the
    demo dataset under ``data_root`` unless it is there.

    The generator's arguments are kept in ``data_root/generated.json``; a
    data root generated with other arguments is refused rather than
    silently used."""
    options = dict(MOTION_DATA) if motion else {}
    if motion and sizes is not None:
        options.update(train_per_class=sizes[0], val_per_class=sizes[1])
    record = osp.join(data_root, 'generated.json')
    if osp.isfile(osp.join(data_root, 'train.txt')):
        if osp.isfile(record):
            with open(record) as f:
                found = json.load(f)
            if found != options:
                sys.exit(f'error: {data_root} was generated with {found} '
                         f'({record}), this run needs {options}; choose '
                         'another --data-root or delete it')
        return
    sys.path.insert(0, REPO_ROOT)
    from mmstop.datasets import generate_demo_dataset
    info = generate_demo_dataset(data_root, **options)
    with open(record, 'w') as f:
        json.dump(options, f)
    print(
        f"generated the {'motion' if motion else 'demo'} dataset in "
        f"{info['root']}: {', '.join(info['classes'])}",
        flush=True)


def run_single(args, env):
    """Train (unless it trains nothing) and test ``args.config``."""
    motion = args.config.endswith('_motion.py')
    data_root = args.data_root or (MOTION_DATA_ROOT
                                   if motion else DEFAULT_DATA_ROOT)
    ensure_dataset(data_root, motion, args.videos_per_class)
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('work_dirs', name)
    options = (motion_options if motion else demo_options)(
        args.config, data_root) + list(args.cfg_options)
    if args.seed is not None:
        options.append(f'randomness.seed={args.seed}')
    trained = all(m[2] != osp.basename(args.config) or m[3] for m in METHODS)
    accuracy, count, _ = run_method(args.config, work_dir, options, env,
                                    trained)
    print(f'\n{name}: top-1 accuracy {accuracy:.1f}% ({count} test videos), '
          f'work dir {work_dir}')


def main(argv=None):
    args = parse_args(argv)
    env = dict(os.environ)
    env.setdefault('HF_HUB_OFFLINE', '1')  # nothing here needs the network
    # one OpenMP thread unless asked otherwise: the tiny models are many
    # small ops (no faster with 2 threads, and 2 stall when the other core
    # is busy), and the results then do not depend on the core count
    env.setdefault('OMP_NUM_THREADS', '1')
    if args.config is not None:
        run_single(args, env)
    else:
        run_job(args, env)


if __name__ == '__main__':
    main()
