# Copyright (c) mmstop contributors. All rights reserved.
"""One command that proves mmstop's GPU path and measures it.

Run it on a machine with a CUDA GPU, from the repository root, in the
environment mmstop is installed in (no downloads; about 5-8 minutes on one
GPU)::

    python tools/analysis/gpu_check.py --out work_dirs/gpu_check.md

It writes a markdown report (and ``.json`` beside it) with four sections and
exits non-zero if any check fails:

* **tests**: ``pytest`` on CUDA: the Triton scan checks
  (``tests/models/ops/triton_scan_checks.py``: forward and every gradient
  against the sequential reference, fp32 / fp64 / bf16 / fp16), the GPU suite
  ``tests/models/test_cuda.py`` (official STOP and SSP on CUDA equal the same
  weights on the CPU with fp32 and TF32 off; Triton / mamba_ssm scans agree
  with the reference at small and VideoMamba-M sizes; an AMP training step of
  each demo model) and, when the golden data are present
  (``$MMSTOP_PARITY_DIR``), the golden parity tests with
  ``MMSTOP_TEST_DEVICE=cuda``.
* **train**: ``tools/train.py`` on the STOP and SSP demo configs (synthetic
  data generated in a temporary directory) without AMP and with ``--amp``
  (fp16 and bf16 for STOP, bf16 for SSP): every loss finite, the last
  epoch's mean loss below the first epoch's.
* **throughput**: training clips/s and peak GPU memory of SSP-M (VideoMamba-M
  + SSP, 8 x 224 x 224, bf16 AMP as its recipe) and STOP (CLIP ViT-B/32, 12 x
  224 x 224, 101 classes through the text encoder, fp16 AMP as the official
  code) at batch 8 and 32: forward + loss + backward + AdamW step, random
  weights, median of timed steps after warm-up.
* **scan**: the selective scan alone at VideoMamba-M size (batch 8, 1,152
  channels, 1,593 steps, state 16, fp32): forward and forward + backward of
  each implementation available (Triton, mamba_ssm, and the per-step
  ``fast`` loop for comparison), with ratios to the fastest; then the
  Triton kernels' launch settings (chunk, channels per program, warps)
  swept.

``--device cpu --quick`` runs the train / throughput / scan sections on the
CPU at demo sizes (the tests use it to keep this tool working); the tests
section then reports itself skipped. ``--sections`` picks sections.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SECTIONS = ('tests', 'train', 'throughput', 'scan')
TEST_FILES = ('tests/models/ops/triton_scan_checks.py',
              'tests/models/test_cuda.py')
PARITY_SELECTION = ('tests/models/test_stop_parity.py',
                    'tests/models/test_ssp_parity.py', '-k',
                    'official_parity or stages_a_to_c or mixer_layer0 '
                    'or model_matches_golden')
# (config, label, extra tools/train.py arguments)
TRAIN_RUNS = (
    ('stop_clip_demo.py', 'fp32', []),
    ('stop_clip_demo.py', 'amp fp16', ['--amp', '--amp-dtype', 'float16']),
    ('stop_clip_demo.py', 'amp bf16', ['--amp', '--amp-dtype', 'bfloat16']),
    ('ssp_videomamba_demo.py', 'fp32', []),
    ('ssp_videomamba_demo.py', 'amp bf16', ['--amp']),
)
# (name, config, autocast dtype, class count for text heads)
MODELS = (
    ('SSP-M (VideoMamba-M + SSP), 8x224x224', 'ssp_videomamba_m16_ucf101.py',
     'bfloat16'),
    ('STOP (CLIP ViT-B/32), 12x224x224, 101 classes', 'stop_clip_ucf101.py',
     'float16'),
)
QUICK_MODELS = (
    ('SSP demo (VideoMamba-tiny + SSP), 4x32x32', 'ssp_videomamba_demo.py',
     'bfloat16'),
    ('STOP demo (tiny CLIP), 8x32x32', 'stop_clip_demo.py', 'float16'),
)
SCAN_SIZE = (8, 1152, 1593, 16)  # batch, channels, length, state
QUICK_SCAN_SIZE = (2, 64, 100, 16)
# Triton launch settings tried (chunk, block_e, num_warps): the defaults of
# selective_scan_triton were chosen without a GPU; this sweep tells the next
# person which to pick
TRITON_SWEEP = ((64, 32, 4), (64, 32, 8), (64, 16, 4), (32, 32, 4),
                (128, 16, 8), (64, 64, 8))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--out',
        default='work_dirs/gpu_check/gpu_check.md',
        help='markdown report (a .json is written beside)')
    parser.add_argument(
        '--device',
        default='cuda',
        choices=['cuda', 'cpu'],
        help='cpu: a dry run of the tool at demo sizes')
    parser.add_argument(
        '--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        '--quick',
        action='store_true',
        help='demo-size models, batch 2, small scan, 2 '
        'epochs')
    parser.add_argument(
        '--batches',
        type=int,
        nargs='+',
        default=None,
        help='throughput batch sizes (default 8 32; quick: '
        '2)')
    parser.add_argument(
        '--epochs',
        type=int,
        default=None,
        help='epochs per training run (default 5; quick: 2)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed steps per measurement (default 5; '
        'quick: 2)')
    parser.add_argument(
        '--train-configs',
        nargs='+',
        default=None,
        metavar='CONFIG',
        help='train only these demo configs (file names, '
        'default: all of the train section)')
    parser.add_argument(
        '--timeout',
        type=float,
        default=900,
        help='seconds per subprocess (default 900)')
    args = parser.parse_args(argv)
    quick = args.quick
    args.batches = args.batches or ([2] if quick else [8, 32])
    args.epochs = args.epochs or (2 if quick else 5)
    args.repeats = args.repeats or (2 if quick else 5)
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            parser.error('no CUDA device here (use --device cpu --quick for '
                         'a dry run of the tool)')
    return args


def child_env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def run_pytest(label, pytest_args, env, timeout):
    """Run pytest in a subprocess; per-test outcomes from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = osp.join(tmp, 'report.xml')
        # the slow tests too (pytest.ini deselects them by default)
        cmd = [
            sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
            '-m', 'slow or not slow', f'--junitxml={xml}', *pytest_args
        ]
        start = time.time()
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                timeout=timeout,
                capture_output=True,
                text=True)
            tail = (proc.stdout + proc.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            return dict(
                label=label,
                error=f'timed out after {timeout} s',
                passed=0,
                failed=0,
                skipped=0,
                failures=[],
                seconds=time.time() - start)
        counts = dict(passed=0, failed=0, skipped=0)
        failures = []
        if osp.isfile(xml):
            for case in ET.parse(xml).getroot().iter('testcase'):
                name = f"{case.get('classname')}::{case.get('name')}"
                if case.find('skipped') is not None:
                    counts['skipped'] += 1
                elif (case.find('failure') is not None
                      or case.find('error') is not None):
                    counts['failed'] += 1
                    failures.append(name)
                else:
                    counts['passed'] += 1
    res = dict(
        label=label,
        **counts,
        failures=failures,
        seconds=time.time() - start,
        returncode=proc.returncode)
    if proc.returncode not in (0, 5) or counts['failed']:
        res['error'] = tail
    return res


def section_tests(args):
    if args.device != 'cuda':
        return dict(skipped='needs CUDA (this was a --device cpu run)')
    env = child_env()
    runs = [
        run_pytest('Triton scan checks + GPU suite (test_cuda.py)',
                   list(TEST_FILES), env, args.timeout)
    ]
    parity = os.environ.get('MMSTOP_PARITY_DIR',
                            osp.join(REPO_ROOT, '..', 'shared', 'parity'))
    if all(osp.isdir(osp.join(parity, k)) for k in ('stop', 'ssp')):
        runs.append(
            run_pytest(
                f'golden parity on CUDA ({parity})', list(PARITY_SELECTION),
                child_env(MMSTOP_TEST_DEVICE='cuda', MMSTOP_PARITY_DIR=parity),
                args.timeout))
    else:
        reason = (f'golden data not found at {parity} (set '
                  'MMSTOP_PARITY_DIR); CUDA == CPU above still holds')
        runs.append(dict(label='golden parity on CUDA', skipped=reason))
    return dict(runs=runs)


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------
def read_losses(work_dir):
    """(epoch, loss) of every logged iteration in MMEngine's scalars.json."""
    found = []
    for root, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            found.append(osp.join(root, 'scalars.json'))
    if len(found) != 1:
        raise RuntimeError(f'expected one scalars.json under {work_dir}, '
                           f'found {found}')
    rows = []
    with open(found[0]) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec and 'epoch' in rec:
                rows.append((rec['epoch'], float(rec['loss'])))
    return rows


def judge_losses(rows):
    """Finite everywhere, last epoch's mean below the first's."""
    import math
    if not rows:
        return dict(ok=False, why='no loss logged')
    epochs = sorted({e for e, _ in rows})
    first = statistics.fmean(v for e, v in rows if e == epochs[0])
    last = statistics.fmean(v for e, v in rows if e == epochs[-1])
    finite = all(math.isfinite(v) for _, v in rows)
    falling = len(epochs) > 1 and last < first
    why = ('' if finite and falling else
           'non-finite loss' if not finite else 'loss did not fall')
    return dict(
        ok=finite and falling,
        iterations=len(rows),
        epochs=len(epochs),
        first_epoch_loss=first,
        last_epoch_loss=last,
        finite=finite,
        falling=falling,
        why=why)


def section_train(args):
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    from run_demo import demo_options
    sys.path.insert(0, REPO_ROOT)
    from mmstop.datasets import generate_demo_dataset
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'demo')
        generate_demo_dataset(data_root)
        for config, label, extra in TRAIN_RUNS:
            if args.train_configs and config not in args.train_configs:
                continue
            if '--amp' in extra and args.device != 'cuda':
                continue  # MMEngine's AmpOptimWrapper needs a GPU
            cfg_path = osp.join(REPO_ROOT, 'configs', config)
            work_dir = osp.join(tmp,
                                f'{config[:-3]}_{label.replace(" ", "_")}')
            options = demo_options(cfg_path, data_root) + [
                f'train_cfg.max_epochs={args.epochs}',
                f'train_cfg.val_interval={args.epochs + 1}',  # no validation
                'default_hooks.logger.interval=1',
            ]
            cmd = [
                sys.executable,
                osp.join(REPO_ROOT, 'tools', 'train.py'), cfg_path,
                '--work-dir', work_dir, *extra, '--cfg-options', *options
            ]
            env = child_env(
                CUDA_VISIBLE_DEVICES=os.environ.get('CUDA_VISIBLE_DEVICES', '0'
                                                    ) if args.device ==
                'cuda' else '')
            start = time.time()
            res = dict(config=config, precision=label)
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=tmp,
                    env=env,
                    timeout=args.timeout,
                    capture_output=True,
                    text=True)
                if proc.returncode != 0:
                    res.update(
                        ok=False,
                        why=f'exit {proc.returncode}',
                        error=(proc.stdout + proc.stderr)[-3000:])
                else:
                    res.update(judge_losses(read_losses(work_dir)))
            except subprocess.TimeoutExpired:
                res.update(ok=False, why=f'timed out after {args.timeout} s')
            res['seconds'] = time.time() - start
            results.append(res)
    return dict(runs=results)


# --------------------------------------------------------------------------
# throughput
# --------------------------------------------------------------------------
def build_model(config, device):
    """The config's model with random weights (no checkpoint is read)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmstop  # noqa: F401
    from mmstop.registry import MODELS
    init_default_scope('mmaction')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config)).model
    cfg.backbone.pretrained = None
    cfg.backbone.pop('init_cfg', None)
    head = cfg.get('cls_head', {})
    if head.get('type') == 'TextClassifierHead':
        count = head.get('num_classes', None) or 101
        head.class_names = [f'action number {i}' for i in range(count)]
    torch.manual_seed(0)
    return MODELS.build(cfg).to(device)


def clip_shape(model):
    bb = model.backbone
    size = getattr(bb, 'img_size', None) or (bb.image_size, ) * 2
    return (3, bb.num_frames, *size)


def sync(device):
    import torch
    if device == 'cuda':
        torch.cuda.synchronize()


def measure_train(model, batch, dtype, device, warmup, repeats):
    """Median seconds of one training step and the peak memory (CUDA)."""
    import torch
    from mmaction.structures import ActionDataSample
    num_classes = model.cls_head.num_classes
    inputs = torch.randn(batch, 1, *clip_shape(model), device=device)
    samples = [
        ActionDataSample().set_gt_label(
            torch.tensor(i % num_classes, device=device)) for i in range(batch)
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    times = []
    if device == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + repeats):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device, dtype=getattr(torch, dtype)):
            losses = model.loss(inputs, samples)
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() /
        2**30 if device == 'cuda' else None)
    return statistics.median(times), peak, float(loss.detach())


def section_throughput(args):
    import torch
    rows = []
    for name, config, dtype in (QUICK_MODELS if args.quick else MODELS):
        model = build_model(config, args.device)
        trainable = sum(p.numel() for p in model.parameters()
                        if p.requires_grad)
        for batch in args.batches:
            row = dict(
                model=name,
                config=config,
                precision=f'amp {dtype}',
                batch=batch,
                trainable=trainable)
            try:
                sec, peak, loss = measure_train(model, batch, dtype,
                                                args.device, 2, args.repeats)
                row.update(
                    seconds=sec,
                    clips_per_s=batch / sec,
                    peak_gib=peak,
                    loss=loss)
            except torch.cuda.OutOfMemoryError:
                row.update(error='out of memory')
            rows.append(row)
        del model
        if args.device == 'cuda':
            torch.cuda.empty_cache()
    return dict(rows=rows)


# --------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------
def section_scan(args):
    import torch
    sys.path.insert(0, REPO_ROOT)
    from mmstop.models.ops import selective_scan
    from mmstop.models.ops.selective_scan import _mamba_ssm_scan_fn
    size = QUICK_SCAN_SIZE if args.quick else SCAN_SIZE
    impls = ['fast']
    if args.device == 'cuda':
        impls = ['triton'
                 ] + (['mamba_ssm'] if _mamba_ssm_scan_fn() else []) + impls
    batch, channels, length, state = size
    g = torch.Generator().manual_seed(0)
    a_log = torch.log(torch.arange(1, state + 1, dtype=torch.float32))
    base = dict(
        u=torch.randn(batch, channels, length, generator=g),
        delta=0.1 * torch.randn(batch, channels, length, generator=g),
        A=-torch.exp(a_log.expand(channels, state).contiguous()),
        B=torch.randn(batch, state, length, generator=g),
        C=torch.randn(batch, state, length, generator=g),
        D=torch.ones(channels),
        z=torch.randn(batch, channels, length, generator=g),
        delta_bias=torch.empty(channels).uniform_(-6.9, -2.25, generator=g))

    def timed(fn):
        row = {}
        for mode in ('forward', 'forward+backward'):
            x = {
                k: v.to(args.device).requires_grad_(mode != 'forward')
                for k, v in base.items()
            }
            times = []
            for i in range(1 + args.repeats):
                sync(args.device)
                start = time.perf_counter()
                with torch.set_grad_enabled(mode != 'forward'):
                    out = fn(**x, delta_softplus=True)
                    if mode != 'forward':
                        out.sum().backward()
                sync(args.device)
                if i:
                    times.append(time.perf_counter() - start)
            row[mode] = statistics.median(times)
        return row

    def ratios(rows):
        for mode in ('forward', 'forward+backward'):
            best = min(r[mode] for r in rows)
            for r in rows:
                r[f'{mode} / fastest'] = r[mode] / best
        return rows

    rows = ratios([
        dict(
            impl=impl,
            **timed(lambda impl=impl, **kw: selective_scan(**kw, impl=impl)))
        for impl in impls
    ])
    sweep = []
    if args.device == 'cuda' and not args.quick:
        from mmstop.models.ops.selective_scan_triton import \
            selective_scan_triton
        for chunk, block_e, warps in TRITON_SWEEP:
            sweep.append(
                dict(
                    impl=f'triton chunk {chunk}, block_e {block_e}, '
                    f'{warps} warps',
                    **timed(lambda c=chunk, b=block_e, w=warps, **kw:
                            selective_scan_triton(
                                chunk=c, block_e=b, num_warps=w, **kw))))
        ratios(sweep)
    return dict(
        size=dict(batch=batch, channels=channels, length=length, state=state),
        rows=rows,
        sweep=sweep)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def fmt(value, digits=3):
    if value is None:
        return 'n/a'
    if isinstance(value, float):
        return f'{value:.{digits}g}'
    return str(value)


def environment(device):
    import torch
    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        device=device)
    try:
        import triton
        env['triton'] = triton.__version__
    except ImportError:
        env['triton'] = 'not installed'
    try:
        import mamba_ssm
        env['mamba_ssm'] = mamba_ssm.__version__
    except ImportError:
        env['mamba_ssm'] = 'not installed'
    if device == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(0)
        env['cuda'] = torch.version.cuda
    else:
        env['cpu'] = platform.processor() or platform.machine()
        env['threads'] = torch.get_num_threads()
    return env


def render(report):
    lines = [
        '# mmstop GPU check', '', f"Command: `{report['command']}`  ",
        f"Date: {report['date']}, total {report['seconds']:.0f} s  ",
        'Environment: ' + ', '.join(f'{k} {v}'
                                    for k, v in report['environment'].items()),
        ''
    ]
    res = report['results']
    if 'tests' in res:
        lines += ['## Tests on the device', '']
        t = res['tests']
        if 'skipped' in t:
            lines += [f"Skipped: {t['skipped']}", '']
        else:
            lines += [
                '| suite | passed | failed | skipped | s |',
                '|---|---|---|---|---|'
            ]
            for r in t['runs']:
                if 'skipped' in r and 'passed' not in r:
                    lines.append(f"| {r['label']} | skipped: {r['skipped']}"
                                 ' | | | |')
                    continue
                lines.append(f"| {r['label']} | {r['passed']} | "
                             f"{r['failed']} | {r['skipped']} | "
                             f"{r['seconds']:.0f} |")
            fails = [f for r in t['runs'] for f in r.get('failures', [])]
            if fails:
                lines += ['', 'Failed: ' + ', '.join(fails)]
            lines.append('')
    if 'train' in res:
        lines += [
            '## Training the demo configs', '',
            '| config | precision | iterations | first-epoch loss | '
            'last-epoch loss | finite | falling | s |',
            '|---|---|---|---|---|---|---|---|'
        ]
        for r in res['train']['runs']:
            lines.append(
                f"| {r['config']} | {r['precision']} | "
                f"{r.get('iterations', '')} | "
                f"{fmt(r.get('first_epoch_loss'), 4)} | "
                f"{fmt(r.get('last_epoch_loss'), 4)} | "
                f"{r.get('finite', '')} | {r.get('falling', r.get('why'))} | "
                f"{r['seconds']:.0f} |")
        lines.append('')
    if 'throughput' in res:
        lines += [
            '## Training throughput', '',
            'One step = forward + loss + backward + AdamW step on the '
            'trainable tensors, random weights.', '',
            '| model | precision | trainable | batch | clips/s | '
            's/step | peak GiB |', '|---|---|---|---|---|---|---|'
        ]
        for r in res['throughput']['rows']:
            if 'error' in r:
                lines.append(f"| {r['model']} | {r['precision']} | "
                             f"{r['trainable']:,} | {r['batch']} | "
                             f"{r['error']} | | |")
                continue
            lines.append(f"| {r['model']} | {r['precision']} | "
                         f"{r['trainable']:,} | {r['batch']} | "
                         f"{fmt(r['clips_per_s'])} | {fmt(r['seconds'])} | "
                         f"{fmt(r['peak_gib'])} |")
        lines.append('')
    if 'scan' in res:
        s = res['scan']['size']
        lines += [
            '## Selective scan alone', '',
            f"batch {s['batch']}, channels {s['channels']}, length "
            f"{s['length']}, state {s['state']}, fp32 inputs, "
            'delta_softplus, D, z and delta_bias on.', '',
            '| impl | forward s | x fastest | forward+backward s | '
            'x fastest |', '|---|---|---|---|---|'
        ]
        for rows in (res['scan']['rows'], res['scan']['sweep']):
            if rows is res['scan']['sweep'] and rows:
                lines += [
                    '', 'Triton launch settings (x fastest among '
                    'these):', '', '| settings | forward s | x fastest '
                    '| forward+backward s | x fastest |',
                    '|---|---|---|---|---|'
                ]
            for r in rows:
                lines.append(f"| {r['impl']} | {fmt(r['forward'])} | "
                             f"{r['forward / fastest']:.2f} | "
                             f"{fmt(r['forward+backward'])} | "
                             f"{r['forward+backward / fastest']:.2f} |")
        lines.append('')
    status = 'PASSED' if report['ok'] else 'FAILED'
    lines += [f'Overall: **{status}**', '']
    return '\n'.join(lines)


def overall_ok(results):
    ok = True
    for r in results.get('tests', {}).get('runs', []):
        ok &= 'error' not in r
    for r in results.get('train', {}).get('runs', []):
        ok &= bool(r.get('ok'))
    for r in results.get('throughput', {}).get('rows', []):
        ok &= 'error' not in r
    return ok


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    start = time.time()
    results = {}
    steps = dict(
        tests=section_tests,
        train=section_train,
        throughput=section_throughput,
        scan=section_scan)
    for name in SECTIONS:
        if name in args.sections:
            t0 = time.time()
            print(f'[gpu_check] {name} ...', flush=True)
            results[name] = steps[name](args)
            print(
                f'[gpu_check] {name} done in {time.time() - t0:.0f} s',
                flush=True)
    report = dict(
        command='python ' +
        ' '.join([osp.relpath(__file__, REPO_ROOT)] +
                 (argv if argv is not None else sys.argv[1:])),
        date=time.strftime('%Y-%m-%d %H:%M'),
        seconds=time.time() - start,
        environment=environment(args.device),
        results=results,
        ok=overall_ok(results))
    text = render(report)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(text)
    with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
        json.dump(report, f, indent=1, default=str)
    print(text)
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
