# Copyright (c) mmstop contributors. All rights reserved.
"""Time STOP's prompt convolutions on CPU: ``F.conv3d`` vs the FFT path.

``mmstop.models.utils.conv3d_same`` uses real FFTs on CPU for float64 and
when a backward pass follows, and ``F.conv3d`` (mkldnn) for float32
inference. This script measures both backends on the official STOP shapes
(ViT-B/32, 224 px, 12 frames) and on the demo's shapes, forward and
forward+backward, and prints the time ratios and the float32 differences.

Usage::

    python tools/analysis/benchmark_conv.py [--repeats 3] [--threads N]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mmstop.models.utils.conv import _conv3d_fft

# name, input [B, C_in, T, H, W], kernel [C_out, C_in, kT, kH, kW], padding
SHAPES = [
    ('intra conv 9->9, 224px, T=12', (1, 9, 12, 224, 224), (9, 9, 3, 11, 11),
     (1, 5, 5)),
    ('inter conv 1->9, 49x768, T=12', (1, 1, 12, 49, 768), (9, 1, 3, 15, 25),
     (1, 7, 12)),
    ('inter conv 9->1, 49x768, T=12', (1, 9, 12, 49, 768), (1, 9, 3, 15, 25),
     (1, 7, 12)),
    ('demo intra 9->9, 32px, T=8, B=4', (4, 9, 8, 32, 32), (9, 9, 3, 5, 5),
     (1, 2, 2)),
    ('demo inter 9->1, 16x64, T=8, B=4', (4, 9, 8, 16, 64), (1, 9, 3, 15, 25),
     (1, 7, 12)),
]


def run(fn, x, w, pad, backward):
    x = x.clone().requires_grad_(backward)
    w = w.clone().requires_grad_(backward)
    start = time.perf_counter()
    y = fn(x, w, pad)
    if backward:
        y.sum().backward()
    return time.perf_counter() - start, y.detach()


def direct(x, w, pad):
    return F.conv3d(x, w, padding=pad)


def fft(x, w, pad):
    return _conv3d_fft(x, w, None, pad)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} runs after one warm-up')
    print('| shape | pass | F.conv3d (s) | FFT (s) | F.conv3d / FFT | '
          'max rel diff |')
    print('|---|---|---:|---:|---:|---:|')
    torch.manual_seed(0)
    for name, xs, ws, pad in SHAPES:
        x = torch.randn(*xs)
        w = torch.randn(*ws) / (ws[1] * ws[2] * ws[3] * ws[4])**0.5
        for backward in (False, True):
            times = {}
            outs = {}
            for label, fn in (('direct', direct), ('fft', fft)):
                run(fn, x, w, pad, backward)  # warm-up
                runs = [run(fn, x, w, pad, backward)
                        for _ in range(args.repeats)]
                times[label] = statistics.median(t for t, _ in runs)
                outs[label] = runs[0][1]
            diff = float((outs['direct'] - outs['fft']).abs().max() /
                         outs['direct'].abs().max())
            print(f"| {name} | {'fwd+bwd' if backward else 'fwd'} | "
                  f"{times['direct']:.3f} | {times['fft']:.3f} | "
                  f"{times['direct'] / times['fft']:.1f} | {diff:.1e} |")


if __name__ == '__main__':
    main()
