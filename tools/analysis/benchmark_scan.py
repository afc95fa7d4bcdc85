# Copyright (c) mmstop contributors. All rights reserved.
"""Benchmark of the selective scan: one implementation against a baseline.

``--impl`` (default ``fast``; or ``triton``, ``mamba_ssm``, ``reference``) is
measured against ``--baseline`` (default the sequential ``reference``) on
``--device`` (``cpu`` or ``cuda``). For each size it reports, per
implementation, the median (and min) wall-clock time of the forward and of
forward + backward over ``--repeats`` runs after ``--warmup`` runs, the
baseline/impl speed-up, the peak extra memory of one call, and the max abs
difference between the two outputs (and gradients).

CUDA: times are taken after ``torch.cuda.synchronize()``; memory is the peak
of ``torch.cuda.max_memory_allocated()`` during one call minus the memory
allocated before it. ``--impl triton`` also runs on CPU tensors under
Triton's interpreter (``TRITON_INTERPRET=1``), slowly: for checking only.

CPU memory: each (size, implementation, mode) runs once in a fresh subprocess
that builds the inputs, resets the kernel's peak-RSS mark (``echo 5 >
/proc/self/clear_refs``), and reports ``VmHWM`` (peak RSS) after one call
minus ``VmRSS`` before it, from ``/proc/self/status``: the peak extra
resident memory of that call (allocator and OpenMP overheads included).
``getrusage().ru_maxrss`` is not used: a child inherits its parent's peak.

The call is the one VideoMamba's mixer makes: ``selective_scan(u, delta, A,
B, C, D, z, delta_bias, delta_softplus=True)`` with Mamba-like values
(A = -exp(log(1..S)), delta = softplus(dt + bias) in about [1e-3, 0.1]).

Examples::

    python tools/analysis/benchmark_scan.py --threads 2 --repeats 7
    python tools/analysis/benchmark_scan.py --device cuda --impl triton \
        --baseline fast --sizes videomamba_m
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import torch

# mmstop imports MMAction2, whose mmcv-lite import warns about missing CUDA ops
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeform')

SIZES = {
    # name: (batch, channels E = d_inner, length L, state S)
    'videomamba_m': (1, 1152, 1569, 16),  # middle, 224², 8 frames
    'tiny': (2, 384, 77, 16),  # VideoMamba-tiny, 64², 4 frames (test size)
}


def parse_size(text):
    if text in SIZES:
        return text, SIZES[text]
    try:
        b, e, l, s = (int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size must be one of {sorted(SIZES)} or "B,E,L,S", got {text!r}')
    return text, (b, e, l, s)


def make_inputs(batch, channels, length, state, seed=0):
    g = torch.Generator().manual_seed(seed)
    a_log = torch.log(torch.arange(1, state + 1, dtype=torch.float32))
    return dict(
        u=torch.randn(batch, channels, length, generator=g),
        delta=0.1 * torch.randn(batch, channels, length, generator=g),
        A=-torch.exp(a_log.expand(channels, state).contiguous()),
        B=torch.randn(batch, state, length, generator=g),
        C=torch.randn(batch, state, length, generator=g),
        D=torch.ones(channels),
        z=torch.randn(batch, channels, length, generator=g),
        delta_bias=torch.empty(channels).uniform_(-6.9, -2.25, generator=g),
    )


def run_once(impl, inputs, backward, grad_out=None):
    """One call; returns (out, grads or None), CUDA work finished."""
    out, grads = _call(impl, inputs, backward, grad_out)
    if out.is_cuda:
        torch.cuda.synchronize()
    return out, grads


def _call(impl, inputs, backward, grad_out):
    from mmstop.models.ops import selective_scan
    if not backward:
        with torch.no_grad():
            return selective_scan(
                **inputs, delta_softplus=True, impl=impl), None
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    out = selective_scan(**leaves, delta_softplus=True, impl=impl)
    out.backward(grad_out)
    return out.detach(), {k: v.grad for k, v in leaves.items()}


def _status_kib(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{key} not in /proc/self/status')


def cuda_memory(size, impl, backward, device):
    """Peak extra CUDA memory (KiB) of one call, measured in this process."""
    inputs = {k: v.to(device) for k, v in make_inputs(*size).items()}
    grad_out = torch.randn(inputs['u'].shape, device=device)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run_once(impl, inputs, backward, grad_out)
    return (torch.cuda.max_memory_allocated() - before) / 1024


def child_memory(args):
    """Subprocess entry: peak extra RSS (KiB) of one call."""
    torch.set_num_threads(args.threads)
    inputs = make_inputs(*args.child_size)
    grad_out = torch.randn(inputs['u'].shape) if args.child_bwd else None
    import mmstop.models.ops  # noqa: F401  (import cost not counted)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak RSS mark (VmHWM) to the current RSS
    before = _status_kib('VmRSS')
    run_once(args.child_impl, inputs, args.child_bwd, grad_out)
    peak = _status_kib('VmHWM')
    print(json.dumps(dict(peak_extra_kib=peak - before)))


def measure_memory(size, impl, backward, threads):
    cmd = [
        sys.executable, __file__, '--child-impl', impl, '--child-size',
        ','.join(map(str, size)), '--threads',
        str(threads)
    ] + (['--child-bwd'] if backward else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])['peak_extra_kib']


def time_calls(fn, warmup, repeats):
    """Median wall-clock, min wall-clock and median process CPU time (s)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    wall.sort()
    cpu.sort()
    return wall[len(wall) // 2], wall[0], cpu[len(cpu) // 2]


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--sizes',
        nargs='+',
        type=parse_size,
        default=[parse_size(k) for k in SIZES],
        help=f'presets {sorted(SIZES)} or "B,E,L,S" (default: all presets)')
    parser.add_argument(
        '--impl',
        default='fast',
        choices=['fast', 'triton', 'mamba_ssm', 'reference'],
        help='implementation measured (default fast)')
    parser.add_argument(
        '--baseline',
        default='reference',
        choices=['reference', 'fast', 'triton', 'mamba_ssm'],
        help='what it is compared with (default reference)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument(
        '--ref-repeats',
        type=int,
        default=None,
        help='repeats for the baseline (default: --repeats)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument(
        '--modes',
        nargs='+',
        default=['fwd', 'fwd+bwd'],
        choices=['fwd', 'fwd+bwd'])
    parser.add_argument(
        '--no-memory',
        action='store_true',
        help='skip the subprocess memory measurements')
    parser.add_argument('--json', default=None, help='also write results here')
    # internal: memory measurement in a fresh process
    parser.add_argument('--child-impl', help=argparse.SUPPRESS)
    parser.add_argument(
        '--child-size',
        help=argparse.SUPPRESS,
        type=lambda s: tuple(int(v) for v in s.split(',')))
    parser.add_argument(
        '--child-bwd', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_impl:
        return child_memory(args)

    torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: CUDA is not available here')
    ref_repeats = args.ref_repeats or args.repeats
    base, impl_name = args.baseline, args.impl
    cpu = platform.processor() or platform.machine()
    where = (
        torch.cuda.get_device_name(0) if args.device == 'cuda' else
        f'{args.threads} thread(s), {os.cpu_count()} CPUs ({cpu})')
    print(f'torch {torch.__version__}, {where}, load average at start '
          f'{os.getloadavg()[0]:.2f}')
    print(f'{impl_name} against {base} on {args.device}: median (min) '
          f'wall-clock of {args.repeats} runs ({ref_repeats} for {base}) '
          f'after {args.warmup} warm-up; memory = peak extra ' +
          ('CUDA memory of one call' if args.device ==
           'cuda' else 'RSS of one call in a fresh process'))
    print(f'wall ms: median (min) wall-clock; cpu ms: median process CPU '
          f'time (all threads); speed-up = {base} / {impl_name}')
    header = (f'{"size B,E,L,S":<28} {"mode":<8} {"base wall ms":>18} '
              f'{"impl wall ms":>16} {"speed-up":>9} {"base cpu":>8} '
              f'{"impl cpu":>8} {"speed-up":>9} {"base MiB":>8} '
              f'{"impl MiB":>9} {"max|diff|":>9} {"rel diff":>9}')
    print(header, flush=True)
    results = []
    for name, size in args.sizes:
        inputs = {k: v.to(args.device) for k, v in make_inputs(*size).items()}
        grad_out = torch.randn(inputs['u'].shape, device=args.device)
        for mode in args.modes:
            bwd = mode == 'fwd+bwd'
            row = dict(
                size=name,
                shape=size,
                mode=mode,
                threads=args.threads,
                device=args.device,
                impl=impl_name,
                baseline=base)
            outs = {}
            for key, impl in (('baseline', base), ('impl', impl_name)):
                reps = ref_repeats if key == 'baseline' else args.repeats
                med, best, cpu = time_calls(
                    lambda: run_once(impl, inputs, bwd, grad_out), args.warmup,
                    reps)
                row[f'{key}_median_ms'] = med * 1e3
                row[f'{key}_min_ms'] = best * 1e3
                row[f'{key}_cpu_median_ms'] = cpu * 1e3
                outs[key] = run_once(impl, inputs, bwd, grad_out)
                if not args.no_memory:
                    row[f'{key}_peak_mib'] = (
                        cuda_memory(size, impl, bwd, args.device)
                        if args.device == 'cuda' else measure_memory(
                            size, impl, bwd, args.threads)) / 1024
            (o_ref, g_ref), (o_fast, g_fast) = outs['baseline'], outs['impl']
            row['max_abs_diff_out'] = max_abs(o_fast, o_ref)
            row['max_abs_out'] = o_ref.abs().max().item()
            if bwd:
                row['max_abs_diff_grad'] = {
                    k: max_abs(g_fast[k], g_ref[k])
                    for k in g_ref
                }
                row['max_abs_grad'] = {
                    k: g_ref[k].abs().max().item()
                    for k in g_ref
                }
            row['speedup'] = row['baseline_median_ms'] / row['impl_median_ms']
            row['speedup_cpu'] = row['baseline_cpu_median_ms'] / row[
                'impl_cpu_median_ms']
            diff = row['max_abs_diff_out']
            rel = diff / row['max_abs_out']
            if bwd:
                rel = max([rel] + [
                    row['max_abs_diff_grad'][k] /
                    max(row['max_abs_grad'][k], 1e-30)
                    for k in row['max_abs_grad']
                ])
            row['max_rel_diff'] = rel
            mem = ('{:>8.1f} {:>9.1f}'.format(row['baseline_peak_mib'],
                                              row['impl_peak_mib'])
                   if not args.no_memory else f'{"-":>8} {"-":>9}')
            ref_t = '{:>9.1f} ({:>6.1f})'.format(row['baseline_median_ms'],
                                                 row['baseline_min_ms'])
            fast_t = '{:>7.1f} ({:>6.1f})'.format(row['impl_median_ms'],
                                                  row['impl_min_ms'])
            print(
                f'{name + " " + str(size):<28} {mode:<8} {ref_t} {fast_t}'
                f' {row["speedup"]:>8.1f}x'
                f' {row["baseline_cpu_median_ms"]:>8.1f}'
                f' {row["impl_cpu_median_ms"]:>8.1f}'
                f' {row["speedup_cpu"]:>8.1f}x {mem} {diff:>9.1e}'
                f' {rel:>9.1e}',
                flush=True)
            results.append(row)
    print(f'load average at end {os.getloadavg()[0]:.2f}')
    if 'fwd+bwd' in args.modes:
        print('max|diff|: max abs difference of the outputs; rel diff: '
              'largest max|diff| / max|reference| over the output and (for '
              'fwd+bwd) the gradients of u, delta, A, B, C, D, z, delta_bias '
              '(see --json for each)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
