# Copyright (c) mmstop contributors. All rights reserved.
"""Time STOP's prompt convolutions on CPU: ``F.conv3d`` vs the FFT path.

``mmstop.models.utils.conv3d_same`` picks ``F.conv3d`` (mkldnn) or real FFTs
on CPU per convolution (rule in its docstring). This script measures both
backends on every convolution of the official STOP model (ViT-B/32, 224 px,
12 frames) and of the demo config, forward and forward+backward in float32,
and prints the time ratios, the float32 differences and which backend
``conv3d_same`` picks.

With ``--model CONFIG`` it times a whole STOP recognizer instead (random
weights, random input of the config's train batch size and clip shape):
the eval forward and one training step (loss, backward, optimizer step on
the trainable parameters), with ``conv3d_same``'s rule ('auto'), with
``F.conv3d`` for every convolution ('direct') and with FFTs for every
convolution ('fft'), and the largest difference of each rule's class
scores from the 'direct' ones (same weights and input, before any training
step), relative to the largest 'direct' score.

Usage::

    python tools/analysis/benchmark_conv.py [--repeats 3] [--threads N]
    python tools/analysis/benchmark_conv.py --model configs/stop_clip_demo.py
    python tools/analysis/benchmark_conv.py \
        --model configs/stop_clip_ucf101.py --batch-size 1
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import mmstop.models.utils.conv as conv_module
from mmstop.models.utils.conv import _conv3d_fft, uses_fft

# Every convolution of the official STOP model (ViT-B/32, 224 px, 12
# frames, one video) and of configs/stop_clip_demo.py (32 px frames, 8 x 8
# patches, width 64, 8 frames, batch 4).
# name, input [B, C_in, T, H, W], kernel [C_out, C_in, kT, kH, kW], padding
SHAPES = [
    ('intra conv 3->9, 224px', (1, 3, 12, 224, 224), (9, 3, 3, 11, 11), (1, 5,
                                                                         5)),
    ('intra conv 9->9, 224px', (1, 9, 12, 224, 224), (9, 9, 3, 11, 11), (1, 5,
                                                                         5)),
    ('intra conv 9->16, 224px', (1, 9, 12, 224, 224), (16, 9, 3, 11, 11),
     (1, 5, 5)),
    ('intra scorer 3->1, 224px', (1, 3, 12, 224, 224), (1, 3, 5, 11, 11),
     (2, 5, 5)),
    ('inter conv 1->9, 49x768', (1, 1, 12, 49, 768), (9, 1, 3, 15, 25), (1, 7,
                                                                         12)),
    ('inter conv 9->1, 49x768', (1, 9, 12, 49, 768), (1, 9, 3, 15, 25), (1, 7,
                                                                         12)),
    ('inter scorer 1->1, 49x768', (1, 1, 12, 49, 768), (1, 1, 5, 11, 11),
     (2, 5, 5)),
    ('demo intra 3->9', (4, 3, 8, 32, 32), (9, 3, 3, 5, 5), (1, 2, 2)),
    ('demo intra 9->9', (4, 9, 8, 32, 32), (9, 9, 3, 5, 5), (1, 2, 2)),
    ('demo intra 9->16', (4, 9, 8, 32, 32), (16, 9, 3, 5, 5), (1, 2, 2)),
    ('demo intra scorer 3->1', (4, 3, 8, 32, 32), (1, 3, 3, 5, 5), (1, 2, 2)),
    ('demo inter 1->9', (4, 1, 8, 16, 64), (9, 1, 3, 15, 25), (1, 7, 12)),
    ('demo inter 9->1', (4, 9, 8, 16, 64), (1, 9, 3, 15, 25), (1, 7, 12)),
    ('demo inter scorer 1->1', (4, 1, 8, 16, 64), (1, 1, 5, 11, 11), (2, 5,
                                                                      5)),
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


def picked_backend(x, w, backward):
    """The backend ``conv3d_same`` chooses for this call."""
    w = w.detach().requires_grad_(backward)
    return 'FFT' if uses_fft(x, w) else 'F.conv3d'


RULES = {
    'auto': uses_fft,
    'direct': lambda x, w: False,
    'fft': lambda x, w: True,
}


def benchmark_model(config, repeats, batch_size=None):
    """Time a STOP recognizer's eval forward and train step per rule."""
    from mmaction.structures import ActionDataSample
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmstop.registry import MODELS

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    head = cfg.model.cls_head
    num_classes = head.get('num_classes') or 4
    head.class_names = [f'class {i}' for i in range(num_classes)]
    head.pop('num_classes', None)
    cfg.model.backbone.pretrained = None  # random weights
    batch = batch_size or cfg.train_dataloader.batch_size
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    frames, size = model.backbone.num_frames, model.backbone.image_size
    inputs = torch.randn(batch, 1, 3, frames, size, size)
    samples = []
    for i in range(batch):
        sample = ActionDataSample()
        sample.set_gt_label(i % num_classes)
        samples.append(sample)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def forward():
        model.eval()
        with torch.no_grad():
            out = model(inputs, samples, mode='predict')
        return torch.stack([s.pred_score for s in out])

    def train_step():
        model.train()
        losses = model(inputs, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        optimizer.step()
        optimizer.zero_grad()

    print(f'{config}: batch {batch} x {frames} frames x {size}px, '
          f'{sum(p.numel() for p in params)} trainable parameters')
    print('| rule | eval forward (s) | train step (s) | '
          'max rel diff of the scores from direct |')
    print('|---|---:|---:|---:|')
    original = conv_module.uses_fft
    try:
        scores = {}
        for rule, fn in RULES.items():  # the weights before any train step
            conv_module.uses_fft = fn
            scores[rule] = forward()
        for rule, fn in RULES.items():
            conv_module.uses_fft = fn
            row = []
            for step in (forward, train_step):
                step()  # warm-up
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - start)
                row.append(statistics.median(times))
            diff = float((scores[rule] - scores['direct']).abs().max() /
                         scores['direct'].abs().max())
            print(f'| {rule} | {row[0]:.3f} | {row[1]:.3f} | {diff:.1e} |')
    finally:
        conv_module.uses_fft = original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument(
        '--model',
        default=None,
        help='a STOP recognition config: time the model')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='with --model: instead of the config\'s')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'median of {args.repeats} runs after one warm-up')
    if args.model:
        benchmark_model(args.model, args.repeats, args.batch_size)
        return
    print('| convolution | pass | F.conv3d (s) | FFT (s) | F.conv3d / FFT | '
          'max rel diff | conv3d_same uses |')
    print('|---|---|---:|---:|---:|---:|---|')
    torch.manual_seed(0)
    for name, xs, ws, pad in SHAPES:
        x = torch.randn(*xs)
        w = torch.randn(*ws) / (ws[1] * ws[2] * ws[3] * ws[4])**0.5
        for backward in (False, True):
            times = {}
            outs = {}
            for label, fn in (('direct', direct), ('fft', fft)):
                run(fn, x, w, pad, backward)  # warm-up
                runs = [
                    run(fn, x, w, pad, backward) for _ in range(args.repeats)
                ]
                times[label] = statistics.median(t for t, _ in runs)
                outs[label] = runs[0][1]
            diff = float((outs['direct'] - outs['fft']).abs().max() /
                         outs['direct'].abs().max())
            print(f"| {name} | {'fwd+bwd' if backward else 'fwd'} | "
                  f"{times['direct']:.3f} | {times['fft']:.3f} | "
                  f"{times['direct'] / times['fft']:.1f} | {diff:.1e} | "
                  f"{picked_backend(x, w, backward)} |")


if __name__ == '__main__':
    main()
