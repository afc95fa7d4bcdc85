# Copyright (c) mmstop contributors. All rights reserved.
"""Classify videos with a trained recognizer: the top-k classes and scores.

    python tools/infer.py CONFIG CHECKPOINT VIDEO [VIDEO|FOLDER ...]
        [--topk 5] [--labels "a,b,c" | --label-file FILE]
        [--template "a video of a person doing {}"] [--device auto]
        [--json OUT] [--cfg-options ...]

Every video (a folder stands for the video files under it) goes through
MMAction2's inference API: the model is built with
``mmaction.apis.init_recognizer`` and loaded strictly from ``CHECKPOINT``
(every missing, unexpected or mis-shaped key is an error), and each video is
classified by ``mmaction.apis.inference_recognizer`` with the config's test
pipeline: its views (e.g. 2 clips x 3 crops) form one batch and their
scores are averaged as in ``tools/test.py`` with one video per batch.

Class names:

* STOP recognizers (``TextClassifierHead``) classify by the text of the
  class names through the prompted text encoder, so ``--labels`` /
  ``--label-file`` replace the trained label set: any names, any number
  (open vocabulary, zero-shot). ``--template`` changes the sentence around
  the name. Without them the config's class-name file is used, or the class
  names stored in the checkpoint when that file is absent.
* Recognizers with a linear classifier (SSP) have fixed classes:
  ``--labels`` / ``--label-file`` only name them, in order, and must give
  ``num_classes`` names. Without them the checkpoint's class names, else
  ``class <index>``.

A video that cannot be read or decoded is reported on stderr with its path
and the reason and skipped; the exit status is then 1.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmaction.apis import inference_recognizer, init_recognizer  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
from mmstop.utils import checkpoint as ckpt_utils  # noqa: E402
from mmstop.utils.annotations import load_class_names  # noqa: E402
from mmstop.utils.config import load_config  # noqa: E402

#: File extensions taken from a folder.
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.flv',
                    '.wmv', '.mpg', '.mpeg', '.3gp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Top-k classes of videos (MMAction2 inference API)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        'videos',
        nargs='+',
        metavar='VIDEO',
        help='video files or folders of videos')
    parser.add_argument(
        '--topk',
        type=int,
        default=5,
        help='classes shown per video (default: 5)')
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        '--labels',
        help='comma-separated class names (STOP: any names, '
        'replacing the trained ones; otherwise the names of the trained '
        'classes)')
    labels.add_argument(
        '--label-file', help='class names, one per line (as --labels)')
    parser.add_argument(
        '--template',
        help="STOP: the sentence around a class name, with "
        "'{}' for the name (default: the config's)")
    parser.add_argument(
        '--device',
        default='auto',
        help="'auto' (cuda:0 when available, else cpu), 'cpu', 'cuda:1', ...")
    parser.add_argument(
        '--json',
        metavar='OUT',
        help='also write the results to this JSON file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value')
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be >= 1, got {args.topk}')
    return args


def parse_labels(labels: Optional[str],
                 label_file: Optional[str]) -> Optional[List[str]]:
    """Class names from ``--labels`` or ``--label-file`` (None: neither).

    Raises:
        ValueError: ``--labels`` names no class or repeats one.
    """
    if label_file is not None:
        return load_class_names(label_file)
    if labels is None:
        return None
    names = [name.strip() for name in labels.split(',')]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f'--labels {labels!r} names no class')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f'--labels repeats {repeated}')
    return names


def find_videos(paths: Sequence[str]) -> List[str]:
    """The video files: each file as given, each folder's files with a
    video extension (:data:`VIDEO_EXTENSIONS`, recursively, sorted)."""
    videos = []
    for path in paths:
        if not osp.isdir(path):
            videos.append(path)
            continue
        found = sorted(
            osp.join(root, name) for root, _, names in os.walk(path)
            for name in names if name.lower().endswith(VIDEO_EXTENSIONS))
        if not found:
            print(
                f'warning: folder {path} holds no video files '
                f'({", ".join(VIDEO_EXTENSIONS)})',
                file=sys.stderr)
        videos += found
    return videos


def resolve_device(device: str) -> str:
    if device == 'auto':
        return 'cuda:0' if torch.cuda.is_available() else 'cpu'
    return device


def checkpoint_classes(checkpoint: dict) -> Optional[List[str]]:
    """The class names MMEngine stored with the dataset's metainfo."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    classes = ((meta or {}).get('dataset_meta') or {}).get('classes')
    return list(classes) if classes else None


def build_recognizer(cfg: Config,
                     checkpoint_path: str,
                     device: str,
                     labels: Optional[List[str]] = None,
                     template: Optional[str] = None):
    """``init_recognizer`` with the class names set, then the checkpoint
    loaded strictly.

    Returns:
        tuple: The recognizer and the names of its outputs.

    Raises:
        ValueError: A retrieval config, or labels that cannot name a closed
            classifier's classes.
        FileNotFoundError: STOP without labels, class-name file or class
            names in the checkpoint.
    """
    if cfg.model.get('type') == 'STOPSimilarity':
        raise ValueError(
            f'{cfg.filename} is a retrieval config (STOPSimilarity): rank '
            'videos by text with tools/retrieval_demo.py')
    checkpoint = ckpt_utils.read_checkpoint(checkpoint_path)
    head = cfg.model.get('cls_head') or {}
    text_head = head.get('type') == 'TextClassifierHead'
    if text_head:
        if template is not None:
            head.template = template
        names = head.get('class_names')
        if labels is None and isinstance(names, str) and \
                not osp.isfile(names):
            labels = checkpoint_classes(checkpoint)
            if labels is None:
                raise FileNotFoundError(
                    f'class-name file {names} (model.cls_head.class_names) '
                    f'does not exist and {checkpoint_path} stores no class '
                    'names: give --labels or --label-file')
        if labels is not None:
            head.class_names = list(labels)
            head.num_classes = len(labels)
    elif template is not None:
        raise ValueError('--template only applies to STOP recognizers '
                         '(TextClassifierHead)')
    model = init_recognizer(cfg, None, device=device)
    state = ckpt_utils.extract_state_dict(checkpoint, source=checkpoint_path)
    ckpt_utils.load_state_dict_checked(
        model,
        state,
        source=f'checkpoint '
        f'{checkpoint_path}',
        hint='a matching config')
    if text_head:
        return model, list(model.cls_head.class_names)
    num_classes = model.cls_head.num_classes
    names = labels or checkpoint_classes(checkpoint)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(
            f'the classifier of {cfg.filename} has {num_classes} fixed '
            f'classes; --labels / --label-file name {len(labels)} (only STOP '
            'recognizers take new class names)')
    if names is None or len(names) != num_classes:
        names = [f'class {i}' for i in range(num_classes)]
    return model, list(names)


def classify(model, names: List[str], videos: Sequence[str], topk: int,
             pipeline) -> Dict[str, list]:
    """Top-k of every video; a video that fails is reported and skipped.

    Returns:
        dict: ``results`` (``video``, ``predictions``: ``label``,
        ``index``, ``score``) and ``skipped`` (``video``, ``error``).
    """
    results, skipped = [], []
    for video in videos:
        try:
            if not osp.isfile(video):
                raise FileNotFoundError('no such file')
            sample = inference_recognizer(model, video, pipeline)
        except Exception as exc:  # decoding errors of any kind
            message = str(exc).strip().splitlines()
            reason = f'{type(exc).__name__}: {message[0] if message else ""}'
            print(f'error: {video}: {reason} (skipped)', file=sys.stderr)
            skipped.append(dict(video=video, error=reason))
            continue
        score = sample.pred_score.float().cpu()
        values, indices = score.topk(min(topk, score.numel()))
        results.append(
            dict(
                video=video,
                predictions=[
                    dict(label=names[i], index=int(i), score=float(v))
                    for v, i in zip(values.tolist(), indices.tolist())
                ]))
    return dict(results=results, skipped=skipped)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    labels = parse_labels(args.labels, args.label_file)
    model, names = build_recognizer(cfg, args.checkpoint,
                                    resolve_device(args.device), labels,
                                    args.template)
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    videos = find_videos(args.videos)
    out = classify(model, names, videos, args.topk, pipeline)
    for result in out['results']:
        print(result['video'])
        for pred in result['predictions']:
            print(f"  {pred['score']:.4f}  {pred['label']}")
    if out['skipped']:
        print(
            f"{len(out['skipped'])} of {len(videos)} video(s) skipped",
            file=sys.stderr)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(out, classes=names), f, indent=1)
    return 1 if out['skipped'] or not videos else 0


if __name__ == '__main__':
    sys.exit(main())
