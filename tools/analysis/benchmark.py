# Copyright (c) mmstop contributors. All rights reserved.
"""CPU benchmark of SSP-M end to end: clips/s and peak memory.

Builds the model of an SSP config (default: VideoMamba-M + SSP + linear head
of ``configs/ssp_videomamba_m16_ucf101.py``, random weights, no checkpoint)
at the requested input size and measures, for each selective-scan
implementation (``scan_impl``: ``fast``, ``reference``):

* ``forward``: ``eval()`` + ``no_grad`` inference, backbone and head;
* ``train``: one training step, ``train()`` mode (drop path active),
  forward + cross-entropy + backward + ``AdamW.step`` on the trainable
  tensors (SSP, ``norm_f``, head; the backbone is frozen as in the recipe).

Inputs are random normalised clips [B, 3, T, H, W] (what the data
preprocessor would hand the backbone). Times are wall-clock per call:
median (and min) of ``--repeats`` calls after ``--warmup`` calls;
clips/s = batch / median.

Denormals: with random weights the scans produce denormal floats, which x86
CPUs process very slowly; after one AdamW step the train step at 112 px was
measured 3-8x slower than with ``--flush-denormal``
(``torch.set_flush_denormal(True)``, flush-to-zero: values below 1.2e-38
become 0). Measure both.

Memory: every (implementation, mode) runs in a fresh subprocess. After the
model and inputs are built it reads ``VmRSS`` (the resident baseline:
Python, libraries, weights, inputs), resets the kernel's peak-RSS mark
(``echo 5 > /proc/self/clear_refs``), runs the warm-up and timed calls and
reads ``VmHWM`` (peak RSS) from ``/proc/self/status``. The table reports the
baseline, the peak and their difference (peak extra resident memory of the
calls: activations, autograd buffers, gradients, optimizer state, allocator
and OpenMP overheads). ``getrusage().ru_maxrss`` is not used: a spawned
child inherits its parent's peak. Linux only. A watchdog stops a worker
whose resident memory passes ``--max-rss-gib`` (default half the RAM) and
the table says so: the reference scan keeps [B, E, L, S] tensors for
autograd, about 20 GiB for one SSP-M train step at 224 px.

The machine load average is recorded before and after each run: on a shared
machine the times are only comparable at similar load.

Example (the full SSP-M size and a smaller one)::

    python tools/analysis/benchmark.py --repeats 1 --warmup 0
    python tools/analysis/benchmark.py --size 112 --frames 8 --repeats 3
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO_ROOT, 'configs', 'ssp_videomamba_m16_ucf101.py')
IMPLS = ('fast', 'reference')
MODES = ('forward', 'train')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--config',
        default=DEFAULT_CONFIG,
        help='SSP config whose model is measured')
    parser.add_argument(
        '--arch',
        default=None,
        help="backbone arch override ('tiny', 'small', "
        "'middle'); default: the config's")
    parser.add_argument(
        '--size', type=int, default=224, help='frame size H = W (default 224)')
    parser.add_argument(
        '--frames', type=int, default=8, help='frames T (default 8)')
    parser.add_argument(
        '--batch', type=int, default=1, help='clips per call (default 1)')
    parser.add_argument(
        '--impls',
        nargs='+',
        choices=IMPLS,
        default=list(IMPLS),
        help='scan implementations')
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=MODES,
        default=list(MODES),
        help='what to measure')
    parser.add_argument(
        '--repeats',
        type=int,
        default=3,
        help='timed calls per measurement (default 3)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=1,
        help='untimed calls first (default 1)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch intra-op threads (also OMP_NUM_THREADS '
        'of the workers); default: torch\'s default')
    parser.add_argument(
        '--flush-denormal',
        action='store_true',
        help='torch.set_flush_denormal(True) in the workers '
        '(denormal floats are slow on x86 CPUs; see '
        'docs/benchmarks.md)')
    parser.add_argument(
        '--timeout',
        type=float,
        default=3600,
        help='seconds per measurement before it is reported '
        'as timed out (default 3600)')
    parser.add_argument(
        '--max-rss-gib',
        type=float,
        default=None,
        help='stop a measurement whose resident memory '
        'passes this many GiB (default: half the machine\'s '
        'RAM); the reference scan\'s autograd needs about '
        '20 GiB for one SSP-M train step at 224 px')
    parser.add_argument(
        '--json',
        default=None,
        help='also write all results to this JSON file')
    parser.add_argument(
        '--worker', nargs=2, metavar=('IMPL', 'MODE'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('size', 'frames', 'batch', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


# --------------------------------------------------------------------------
# worker (one fresh process per measurement)
# --------------------------------------------------------------------------
def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _reset_peak_rss():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def build_model(args, impl):
    import warnings
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeform')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmstop  # noqa: F401  (registers VideoMamba / SSP)
    from mmstop.registry import MODELS
    init_default_scope('mmaction')
    cfg = Config.fromfile(args.config)
    model_cfg = cfg.model
    model_cfg.backbone.update(
        num_frames=args.frames,
        img_size=args.size,
        scan_impl=impl,
        pretrained=None)
    if args.arch is not None:
        from mmstop.models.backbones import VideoMamba
        name = VideoMamba._arch_alias.get(args.arch, args.arch)
        if name not in VideoMamba.arch_zoo:
            raise SystemExit(f'--arch must be one of '
                             f'{sorted(VideoMamba.arch_zoo)}, got {args.arch}')
        model_cfg.backbone.arch = name
        model_cfg.cls_head.in_channels = VideoMamba.arch_zoo[name][
            'embed_dims']
    # the batch augments are not part of the measured compute
    model_cfg.data_preprocessor.pop('blending', None)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _mem_total_kib():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemTotal:'):
                return int(line.split()[1])
    raise RuntimeError('MemTotal not in /proc/meminfo')


def _start_rss_guard(limit_kib):
    """Exit the worker (code 3) once VmRSS passes ``limit_kib``: on a
    shared machine a measurement must not push others into swap or OOM."""
    import threading

    def watch():
        while True:
            rss = _status_kib('VmRSS')
            if rss > limit_kib:
                print(f'RSS_LIMIT {rss / 2**20:.1f} GiB', flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def worker(args):
    import torch
    import torch.nn.functional as F
    impl, mode = args.worker
    limit = (
        args.max_rss_gib * 2**20 if args.max_rss_gib else _mem_total_kib() / 2)
    _start_rss_guard(limit)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit('--flush-denormal: not supported on this CPU')
    torch.manual_seed(0)
    model = build_model(args, impl)
    backbone, head = model.backbone, model.cls_head
    trainable = [p for p in model.parameters() if p.requires_grad]
    ssp_params = sum(p.numel() for p in backbone.ssp.parameters())
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    labels = torch.randint(head.num_classes, (args.batch, ))

    if mode == 'forward':
        model.eval()

        def call():
            with torch.no_grad():
                return head(backbone(x))
    else:
        model.train()
        optimizer = torch.optim.AdamW(
            trainable,
            lr=1e-3,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.05)

        def call():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(backbone(x)), labels)
            loss.backward()
            optimizer.step()
            return loss

    baseline = _status_kib('VmRSS')
    _reset_peak_rss()
    for _ in range(args.warmup):
        call()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    peak = _status_kib('VmHWM')
    result = dict(
        impl=impl,
        mode=mode,
        median_s=statistics.median(times),
        min_s=min(times),
        times_s=times,
        clips_per_s=args.batch / statistics.median(times),
        baseline_rss_mib=baseline / 1024,
        peak_rss_mib=peak / 1024,
        peak_extra_mib=(peak - baseline) / 1024,
        threads=torch.get_num_threads(),
        flush_denormal=bool(args.flush_denormal),
        trainable_params=sum(p.numel() for p in trainable),
        ssp_params=ssp_params,
        total_params=sum(p.numel() for p in model.parameters()),
        seq_len=1 + backbone.num_temporal_tokens *
        (backbone.num_patches + backbone.num_prompts),
        embed_dims=backbone.embed_dims,
        depth=backbone.depth)
    print('RESULT ' + json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def _git(*cmd):
    try:
        return subprocess.run(['git', *cmd],
                              cwd=REPO_ROOT,
                              text=True,
                              capture_output=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def machine_info():
    cpu = platform.processor() or 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    scan_dirty = _git('status', '--porcelain', '--',
                      'mmstop/models/ops/selective_scan.py')
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        python=platform.python_version(),
        commit=_git('rev-parse', '--short', 'HEAD'),
        selective_scan_py='modified (uncommitted)'
        if scan_dirty else 'as committed')


def run_worker(args, impl, mode, argv):
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    cmd = [
        sys.executable,
        osp.abspath(__file__), *argv, '--worker', impl, mode
    ]
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            text=True,
            capture_output=True,
            timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(
            impl=impl,
            mode=mode,
            error=f'timed out after '
            f'{args.timeout:.0f} s',
            load_before=load_before,
            load_after=os.getloadavg())
    wall = time.perf_counter() - start
    result, over = None, None
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            result = json.loads(line[len('RESULT '):])
        elif line.startswith('RSS_LIMIT '):
            over = line[len('RSS_LIMIT '):]
    if proc.returncode != 0 or result is None:
        if over is not None:
            error = (f'stopped after {wall:.0f} s: resident memory reached '
                     f'{over} (--max-rss-gib)')
        else:
            error = f'worker exited with {proc.returncode}'
        return dict(
            impl=impl,
            mode=mode,
            load_before=load_before,
            load_after=os.getloadavg(),
            error=error,
            log_tail=(proc.stdout + proc.stderr)[-2000:])
    result.update(
        load_before=load_before,
        load_after=os.getloadavg(),
        process_wall_s=wall)
    return result


def _load(avg):
    return '/'.join(f'{v:.1f}' for v in avg)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return None
    import torch  # only for the version string
    info = machine_info()
    info.update(
        torch=torch.__version__,
        command='python tools/analysis/benchmark.py ' + ' '.join(argv))
    print(f'# SSP end to end on CPU: {info["cpu"]} ({info["cores"]} cores), '
          f'Python {info["python"]}, torch {info["torch"]}, commit '
          f'{info["commit"]} (selective_scan.py {info["selective_scan_py"]})')
    print(f'# {info["command"]}')
    print(f'# input [{args.batch}, 3, {args.frames}, {args.size}, '
          f'{args.size}], config {osp.relpath(args.config, REPO_ROOT)}' +
          (f', arch {args.arch}' if args.arch else '') +
          f'; median of {args.repeats} after {args.warmup} warm-up; '
          f'denormals {"flushed" if args.flush_denormal else "kept"}')
    results = []
    for impl in args.impls:
        for mode in args.modes:
            res = run_worker(args, impl, mode, argv)
            results.append(res)
            if 'error' in res:
                print(f'# {impl} {mode}: {res["error"]}', flush=True)
            else:
                print(
                    f'# {impl} {mode}: {res["median_s"]:.3f} s '
                    f'(load {_load(res["load_before"])} -> '
                    f'{_load(res["load_after"])})',
                    flush=True)
    ok = [r for r in results if 'error' not in r]
    if ok:
        r0 = ok[0]
        print(f'# model: {r0["embed_dims"]} wide, {r0["depth"]} layers, '
              f'sequence length {r0["seq_len"]}; parameters: '
              f'{r0["total_params"]:,} total, {r0["trainable_params"]:,} '
              f'trainable ({r0["ssp_params"]:,} SSP + norm_f + head); '
              f'{r0["threads"]} threads')
    print('| scan | pass | median s (min) | clips/s | baseline RSS MiB | '
          'peak RSS MiB | peak extra MiB | load avg before -> after |')
    print('|---|---|---:|---:|---:|---:|---:|---|')
    for r in results:
        if 'error' in r:
            print(f'| {r["impl"]} | {r["mode"]} | {r["error"]} | | | | '
                  f'| {_load(r["load_before"])} -> '
                  f'{_load(r["load_after"])} |')
            continue
        print(f'| {r["impl"]} | {r["mode"]} | {r["median_s"]:.3f} '
              f'({r["min_s"]:.3f}) | {r["clips_per_s"]:.4g} | '
              f'{r["baseline_rss_mib"]:.0f} | {r["peak_rss_mib"]:.0f} | '
              f'{r["peak_extra_mib"]:.0f} | {_load(r["load_before"])} -> '
              f'{_load(r["load_after"])} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(info=info, args=vars(args), results=results), f, indent=1)
    return results


if __name__ == '__main__':
    main()
