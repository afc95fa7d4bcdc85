# Copyright (c) mmstop contributors. All rights reserved.
r"""Pretrain mmstop's tiny VideoMamba on procedural (shape, motion) clips.

The supervised pretraining that the published VideoMamba models get on
Kinetics-400, at toy scale: a small :class:`mmstop.models.VideoMamba`
(:data:`ARCH`, :data:`MODEL`: 6 layers of width 64, 8 frames of 32 x 32
pixels in 16 x 16 patches) with a linear classifier is trained from scratch
on
:class:`mmstop.datasets.MotionPretrainDataset` clips drawn on the fly (24
classes: 3 shapes x 8 motions, none of them a downstream demo class), with
AdamW, warm-up + cosine, label smoothing 0.1 and the official no-decay rule
(1-D tensors, position embeddings, CLS token). One change to the official
random init: the mixers' ``out_proj`` weights are multiplied by
``--out-proj-gain`` (4). The official init divides them by sqrt(depth), and
at this size the CLS feature then hardly depends on the clip (its standard
deviation across clips is 0.07 against 0.17 with the gain), which stalls
training from scratch for hundreds of steps.

The result is saved in VideoMamba's published checkpoint layout,
``{'model': state_dict}`` with the official parameter names and the
classifier as ``head.weight`` / ``head.bias``, in float16, so
``VideoMamba(pretrained=...)`` reads it exactly as it reads
``videomamba_m16_k400_*.pth`` (the classifier is skipped by a backbone). A
JSON file with the provenance (arguments, data, metrics, sha256) is written
next to it. The reported accuracy is measured on new clips (``split='val'``)
with the saved float16 weights read back through ``VideoMamba(pretrained=)``.

Usage::

    python tools/pretrain/tiny_videomamba.py \
        checkpoints/tiny_videomamba_motion.pth
    python tools/pretrain/tiny_videomamba.py /tmp/quick.pth --steps 5 \
        --eval-clips 48

The defaults reproduce the shipped checkpoint (checkpoints/README.md).
"""
import argparse
import os
import os.path as osp
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mmstop.datasets.motion_pretrain import MotionPretrainDataset  # noqa: E402
from mmstop.models.backbones import VideoMamba  # noqa: E402
from mmstop.utils.checkpoint import read_checkpoint  # noqa: E402
from mmstop.utils.fileio import atomic_torch_save  # noqa: E402
# yapf: disable
from mmstop.utils.pretraining import (provenance,  # noqa: E402
                                      split_decay, to_normalised_tensor,
                                      warmup_cosine_lr, write_json)
# yapf: enable

#: Width and depth of the tiny VideoMamba (``VideoMamba(arch=...)``).
ARCH = dict(embed_dims=64, depth=6)
#: The other ``VideoMamba`` arguments of the pretrained model: 16 x 16
#: patches (2 x 2 per frame, 33 tokens) and an SSM state of 8 instead of the
#: published 16 keep the CPU scan cheap.
MODEL = dict(img_size=32, patch_size=16, num_frames=8, d_state=8)
#: ImageNet normalisation on 0-255 pixels (the SSP configs' preprocessor).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        'out',
        help='checkpoint path (.pth); the provenance '
        'goes to the same path with .json')
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--weight-decay', type=float, default=0.05)
    parser.add_argument('--warmup-steps', type=int, default=100)
    parser.add_argument('--label-smoothing', type=float, default=0.1)
    parser.add_argument(
        '--out-proj-gain',
        type=float,
        default=4.,
        help='multiplies the mixers\' out_proj init')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (results depend on it slightly)')
    parser.add_argument(
        '--eval-clips',
        type=int,
        default=480,
        help='validation clips (new draws)')
    parser.add_argument('--log-interval', type=int, default=50)
    return parser.parse_args(argv)


def clips_to_tensor(clips: List[np.ndarray]) -> torch.Tensor:
    """uint8 clips ``[T, H, W, 3]`` -> normalised ``[N, 3, T, H, W]``."""
    x = to_normalised_tensor(np.stack(clips), IMAGENET_MEAN, IMAGENET_STD)
    return x.transpose(1, 2).contiguous()  # [N, T, 3, H, W] -> NCTHW


def build_backbone(**kwargs) -> VideoMamba:
    """The tiny VideoMamba (plain, trainable) with ``kwargs`` overrides."""
    return VideoMamba(arch=dict(ARCH), **dict(MODEL, **kwargs))


@torch.no_grad()
def evaluate(backbone: nn.Module, head: nn.Module,
             data: MotionPretrainDataset) -> Dict[str, float]:
    """Top-1 accuracy of ``head(backbone(clip))`` on ``data``, and how
    often its predicted class has the right motion and the right shape."""
    backbone.eval()
    preds, labels = [], []
    for start in range(0, len(data), 48):
        items = [data[i] for i in range(start, min(start + 48, len(data)))]
        logits = head(backbone(clips_to_tensor([it['imgs'] for it in items])))
        preds += logits.argmax(dim=1).tolist()
        labels += [it['label'] for it in items]
    pairs = [(data.classes[p], data.classes[t]) for p, t in zip(preds, labels)]
    return dict(
        top1=float(np.mean([p == t for p, t in zip(preds, labels)])),
        motion_acc=float(np.mean([p[1] == t[1] for p, t in pairs])),
        shape_acc=float(np.mean([p[0] == t[0] for p, t in pairs])))


def train(args) -> Tuple[nn.Module, nn.Module, List[Tuple[int, float]]]:
    """Train backbone + classifier; return them and the (step, loss) log."""
    torch.manual_seed(args.seed)
    data = MotionPretrainDataset(
        args.steps * args.batch_size,
        num_frames=MODEL['num_frames'],
        image_size=MODEL['img_size'],
        split='train',
        seed=args.seed)
    backbone = build_backbone()
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if name.endswith('mixer.out_proj.weight'):
                param.mul_(args.out_proj_gain)
    head = nn.Linear(ARCH['embed_dims'], len(data.classes))
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    params = [(f'backbone.{n}', p) for n, p in backbone.named_parameters()]
    params += [(f'head.{n}', p) for n, p in head.named_parameters()]
    # the official no-decay rule: 1-D tensors, position embeddings, CLS
    groups = split_decay(
        params, lambda name, p: p.ndim < 2 or name.endswith(
            ('pos_embed', 'cls_token', 'temporal_pos_embedding')))
    optimizer = torch.optim.AdamW(
        groups, lr=args.lr, weight_decay=args.weight_decay)
    log, start = [], time.time()
    backbone.train()
    for step in range(args.steps):
        lr = warmup_cosine_lr(step, args.steps, args.warmup_steps, args.lr)
        for group in optimizer.param_groups:
            group['lr'] = lr
        items = [
            data[step * args.batch_size + i] for i in range(args.batch_size)
        ]
        clips = clips_to_tensor([it['imgs'] for it in items])
        labels = torch.tensor([it['label'] for it in items])
        loss = F.cross_entropy(
            head(backbone(clips)),
            labels,
            label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.log_interval == 0 or step == args.steps - 1:
            log.append((step, loss.item()))
            print(
                f'step {step}/{args.steps} loss {loss.item():.4f} '
                f'lr {lr:.2e} ({time.time() - start:.0f} s)',
                flush=True)
    return backbone, head, log


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    backbone, head, log = train(args)
    train_seconds = time.time() - start

    state = OrderedDict(
        (k, v.detach().half()) for k, v in backbone.state_dict().items())
    state.update(
        ('head.' + k, v.detach().half()) for k, v in head.state_dict().items())
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_torch_save({'model': state}, args.out)

    # evaluate what was saved, read back the way configs read it
    reloaded = build_backbone(pretrained=args.out)
    reloaded.init_weights()
    saved = read_checkpoint(args.out)['model']
    classes = saved['head.weight'].shape[0]
    reloaded_head = nn.Linear(ARCH['embed_dims'], classes)
    reloaded_head.load_state_dict(
        dict(
            weight=saved['head.weight'].float(),
            bias=saved['head.bias'].float()))
    val = MotionPretrainDataset(
        args.eval_clips,
        num_frames=MODEL['num_frames'],
        image_size=MODEL['img_size'],
        split='val',
        seed=args.seed)
    metrics = evaluate(reloaded, reloaded_head, val)
    info = provenance(
        args.out,
        'tools/pretrain/tiny_videomamba.py',
        sys.argv[1:] if argv is None else argv,
        args=vars(args),
        arch=ARCH,
        model=MODEL,
        data=dict(
            dataset='mmstop.datasets.MotionPretrainDataset',
            split='train',
            seed=args.seed,
            clips_seen=args.steps * args.batch_size,
            classes=val.class_names),
        final_loss=log[-1][1],
        loss_log=log,
        val=metrics,
        val_clips=len(val),
        chance=dict(
            top1=1. / classes,
            motion_acc=1. / len(set(m for _, m in val.classes)),
            shape_acc=1. / len(set(s for s, _ in val.classes))),
        train_seconds=round(train_seconds, 1))
    write_json(osp.splitext(args.out)[0] + '.json', info)
    print(f"val {metrics} ({len(val)} new clips, chance {info['chance']})"
          f"\nsha256 {info['sha256']}, {info['bytes']} bytes, trained in "
          f"{info['train_seconds']} s")


if __name__ == '__main__':
    main()
