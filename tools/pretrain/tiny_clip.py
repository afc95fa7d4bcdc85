# Copyright (c) mmstop contributors. All rights reserved.
r"""Pretrain mmstop's tiny CLIP on procedural image-caption pairs (CPU).

Both towers of a small open_clip CLIP (:data:`ARCH`: a 4-layer ViT of width
128 on 32 x 32 images with 8 x 8 patches, a 4-layer text transformer of width
64 with CLIP's BPE vocabulary) are trained from scratch with CLIP's symmetric
contrastive loss on :class:`mmstop.datasets.ShapeCaptionDataset` pairs drawn
on the fly (no colour-shape pair of ``HELD_OUT_PAIRS`` is ever shown). The
result is saved as a plain state dict with OpenAI's parameter names in
float16, the format ``STOPCLIP(pretrained=...)`` reads for OpenAI's own
checkpoints, next to a JSON file with the provenance (arguments, data,
metrics, sha256).

Evaluation (on the saved float16 weights, loaded back through
:func:`mmstop.models.clip.read_clip_checkpoint`): zero-shot classification
of images into the 40 colour-shape classes with the prompts ``'a photo of a
{colour} {shape}'``, on images of the held-out pairs (the model never saw
those combinations; chance 1/40) and on new images of the seen pairs; for the
held-out images also restricted to the 10 held-out classes (chance 1/10), and
the colour and shape parts of the 40-way prediction separately.

Usage::

    python tools/pretrain/tiny_clip.py checkpoints/tiny_clip_shapes.pth
    python tools/pretrain/tiny_clip.py /tmp/quick.pth --steps 20 \
        --eval-images 64

The defaults reproduce the shipped checkpoint (checkpoints/README.md).
Training is deterministic for a given seed and thread count on one machine.
"""
import argparse
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# yapf: disable
from mmstop.datasets.shape_captions import (HELD_OUT_PAIRS,  # noqa: E402
                                            ShapeCaptionDataset,
                                            colour_shape_pairs,
                                            zero_shot_prompts)
from mmstop.datasets.transforms import TokenizeText  # noqa: E402
from mmstop.models.clip.builder import resolve_clip_arch  # noqa: E402
from mmstop.models.clip import (build_open_clip,  # noqa: E402
                                load_clip_state_dict, read_clip_checkpoint)
from mmstop.utils.fileio import atomic_torch_save  # noqa: E402
from mmstop.utils.pretraining import (provenance,  # noqa: E402
                                      split_decay, to_normalised_tensor,
                                      warmup_cosine_lr, write_json)
# yapf: enable

#: The tiny CLIP: the ``'tiny-shapes'`` entry of mmstop's CLIP arch table
#: (``arch`` of ``STOPCLIP`` and ``build_open_clip``), every key resolved.
ARCH = resolve_clip_arch('tiny-shapes')
#: CLIP's normalisation on 0-255 pixels (the STOP configs' preprocessor).
CLIP_MEAN = (122.770938, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        'out',
        help='checkpoint path (.pth); the provenance '
        'goes to the same path with .json')
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument(
        '--group-size',
        type=int,
        default=4,
        help='hard-negative groups: consecutive pairs that '
        'differ in one attribute (ShapeCaptionDataset)')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--weight-decay', type=float, default=0.)
    parser.add_argument('--warmup-steps', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (results depend on it slightly)')
    parser.add_argument(
        '--eval-images',
        type=int,
        default=400,
        help='images per evaluation split')
    parser.add_argument('--log-interval', type=int, default=100)
    return parser.parse_args(argv)


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 RGB images ``[H, W, 3]`` -> CLIP-normalised ``[N, 3, H, W]``."""
    return to_normalised_tensor(np.stack(images), CLIP_MEAN, CLIP_STD)


def encode_text(clip, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's text tower on ids cut after the longest sentence.

    Under the causal mask the tokens after a sentence's EOT cannot change its
    EOT feature, so this equals ``clip.encode_text`` on the full context
    (tested) at a fraction of the cost.
    """
    eot = ids.argmax(dim=-1)
    length = int(eot.max()) + 1
    x = clip.token_embedding(ids[:, :length])
    x = x + clip.positional_embedding[:length]
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    return x[torch.arange(ids.shape[0]), eot] @ clip.text_projection


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of matching pairs."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100) * image_features @ \
        text_features.t()
    target = torch.arange(logits.shape[0])
    return 0.5 * (
        F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@torch.no_grad()
def zero_shot_eval(clip, tokenizer: TokenizeText, num_images: int,
                   seed: int) -> Dict[str, float]:
    """Zero-shot colour-shape classification (module docstring).

    Evaluation images use ``seed + 1`` so they are never training images.
    """
    clip.eval()
    pairs = colour_shape_pairs('all')
    colours = sorted(set(c for c, _ in pairs))
    shapes = sorted(set(s for _, s in pairs))
    held = [pairs.index(p) for p in colour_shape_pairs('held_out')]
    text = F.normalize(
        encode_text(clip, tokenizer.encode(zero_shot_prompts(pairs))), dim=-1)
    metrics = {}
    for split, key in (('held_out', 'held_out'), ('train', 'seen')):
        data = ShapeCaptionDataset(
            num_images,
            image_size=ARCH['image_size'],
            split=split,
            seed=seed + 1)
        items = [data[i] for i in range(len(data))]
        feats = []
        for start in range(0, len(items), 200):
            batch = images_to_tensor(
                [it['img'] for it in items[start:start + 200]])
            feats.append(F.normalize(clip.encode_image(batch), dim=-1))
        scores = torch.cat(feats) @ text.t()
        target = torch.tensor([
            pairs.index(
                (it['attributes']['colour'], it['attributes']['shape']))
            for it in items
        ])
        pred = scores.argmax(dim=1)
        metrics[f'{key}_top1'] = (pred == target).float().mean().item()
        colour_of = torch.tensor([colours.index(c) for c, _ in pairs])
        shape_of = torch.tensor([shapes.index(s) for _, s in pairs])
        metrics[f'{key}_colour_acc'] = (
            colour_of[pred] == colour_of[target]).float().mean().item()
        metrics[f'{key}_shape_acc'] = (
            shape_of[pred] == shape_of[target]).float().mean().item()
        if key == 'held_out':
            sub = scores[:, held].argmax(dim=1)
            metrics['held_out_top1_among_held_out'] = (
                torch.tensor(held)[sub] == target).float().mean().item()
    metrics['chance_top1'] = 1. / len(pairs)
    metrics['chance_top1_among_held_out'] = 1. / len(held)
    metrics.update(attribute_matching(clip, tokenizer, num_images, seed))
    return metrics


@torch.no_grad()
def attribute_matching(clip,
                       tokenizer: TokenizeText,
                       num_images: int,
                       seed: int,
                       group_size: int = 4) -> Dict[str, float]:
    """Per attribute, how often an image picks its own caption among the
    ``group_size`` captions of images that differ from it only in that
    attribute (new hard-negative groups of the ``'train'`` pairs; chance
    ``1 / group_size`` for attributes with at least that many values)."""
    data = ShapeCaptionDataset(
        num_images - num_images % group_size,
        image_size=ARCH['image_size'],
        split='train',
        seed=seed + 1,
        group_size=group_size)
    hits: Dict[str, List[float]] = {}
    for start in range(0, len(data), group_size):
        items = [data[start + j] for j in range(group_size)]
        attrs = [it['attributes'] for it in items]
        varied = [k for k in attrs[0] if len({str(a[k]) for a in attrs}) > 1]
        if not varied:
            continue
        name = 'count' if 'count' in varied else varied[0]
        image = F.normalize(
            clip.encode_image(images_to_tensor([it['img'] for it in items])),
            dim=-1)
        text = F.normalize(
            encode_text(clip, tokenizer.encode([it['text'] for it in items])),
            dim=-1)
        correct = (image @ text.t()).argmax(dim=1) == torch.arange(group_size)
        hits.setdefault(name, []).append(correct.float().mean().item())
    return {
        f'matching_{k}': float(np.mean(v))
        for k, v in sorted(hits.items())
    }


def train(args) -> Tuple[torch.nn.Module, List[Tuple[int, float]]]:
    """Train the tiny CLIP; return it and the (step, loss) log."""
    torch.manual_seed(args.seed)
    clip = build_open_clip(ARCH)
    with torch.no_grad():  # CLIP's initial temperature 0.07
        clip.logit_scale.fill_(math.log(1 / 0.07))
    # no decay on gains, biases, embeddings (rows of tokens the captions
    # never use keep their init) and the logit scale
    groups = split_decay(
        clip.named_parameters(), lambda name, p: p.ndim < 2 or 'embedding' in
        name or name == 'logit_scale')
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        weight_decay=args.weight_decay)
    tokenizer = TokenizeText(context_length=ARCH['context_length'])
    data = ShapeCaptionDataset(
        args.steps * args.batch_size,
        image_size=ARCH['image_size'],
        split='train',
        seed=args.seed,
        group_size=args.group_size)
    log, start = [], time.time()
    clip.train()
    for step in range(args.steps):
        lr = warmup_cosine_lr(step, args.steps, args.warmup_steps, args.lr)
        for group in optimizer.param_groups:
            group['lr'] = lr
        items = [
            data[step * args.batch_size + i] for i in range(args.batch_size)
        ]
        images = images_to_tensor([it['img'] for it in items])
        ids = tokenizer.encode([it['text'] for it in items])
        loss = contrastive_loss(
            clip.encode_image(images), encode_text(clip, ids),
            clip.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.log_interval == 0 or step == args.steps - 1:
            log.append((step, loss.item()))
            print(
                f'step {step}/{args.steps} loss {loss.item():.4f} '
                f'scale {clip.logit_scale.exp().item():.1f} '
                f'lr {lr:.2e} '
                f'({time.time() - start:.0f} s)',
                flush=True)
    return clip, log


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    clip, log = train(args)
    train_seconds = time.time() - start

    state = {k: v.detach().half() for k, v in clip.state_dict().items()}
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_torch_save(state, args.out)
    # evaluate what was saved: fp16 weights read by the backbone's loader
    reloaded = build_open_clip(ARCH)
    load_clip_state_dict(
        reloaded, read_clip_checkpoint(args.out), source=args.out)
    metrics = zero_shot_eval(
        reloaded, TokenizeText(context_length=ARCH['context_length']),
        args.eval_images, args.seed)
    info = provenance(
        args.out,
        'tools/pretrain/tiny_clip.py',
        sys.argv[1:] if argv is None else argv,
        args=vars(args),
        arch=ARCH,
        data=dict(
            dataset='mmstop.datasets.ShapeCaptionDataset',
            split='train',
            seed=args.seed,
            group_size=args.group_size,
            pairs_seen=args.steps * args.batch_size,
            held_out_pairs=[list(p) for p in HELD_OUT_PAIRS]),
        final_loss=log[-1][1],
        loss_log=log,
        zero_shot=metrics,
        train_seconds=round(train_seconds, 1))
    write_json(osp.splitext(args.out)[0] + '.json', info)
    print(f"zero-shot: {metrics}\nsha256 {info['sha256']}, "
          f"{info['bytes']} bytes, trained in {info['train_seconds']} s")


if __name__ == '__main__':
    main()
