# Copyright (c) mmstop contributors. All rights reserved.
"""Text-video retrieval demo with a trained STOP retrieval model.

Three commands:

``embed CONFIG CHECKPOINT VIDEO_DIR --out FEATURES.pt``
    Encode every video of a folder (recursively; by extension) once, with
    the config's test pipeline (frame sampling, resize, crop) and a fixed
    batch size, and save the L2-normalised video features with the file
    names, the config, the checkpoint path and the settings to a ``.pt``
    file. Official-mode STOP video features depend on the other videos of
    the batch (the inter-frame scores are min-max normalised over it): the
    batch size (default: the config's test batch size) is recorded, and
    features are only comparable between runs with the same batch size and
    file order. A video that cannot be read is skipped and listed (the
    features file records it under ``skipped``); the batches are formed from
    the readable videos in order.

``query FEATURES.pt TEXT [TEXT ...] [--top-k K]``
    Encode each text with the model of the features file and print the
    ``K`` best-matching videos with their cosine similarity. An empty text
    is an error.

``query-video FEATURES.pt VIDEO --captions CAPTIONS.txt [--top-k K]``
    Rank the captions of a text file (one per line) for a video: a file of
    the embedded folder uses its stored feature; any other video file is
    encoded on its own (a batch of one, so in official mode its feature
    differs from one computed in a batch; the tool says so).

Examples (the CPU demo on mmstop's tiny pretrained CLIP, docs/retrieval.md
section 7)::

    python tools/run_demo.py --methods zeroshot   # writes data/motion
    python tools/train.py configs/stop_clip_retrieval_motion.py
    python tools/retrieval_demo.py embed \\
        configs/stop_clip_retrieval_motion.py \\
        work_dirs/stop_clip_retrieval_motion/epoch_5.pth data/motion/videos \\
        --out work_dirs/motion_videos.pt
    python tools/retrieval_demo.py query work_dirs/motion_videos.pt \\
        "a red square" --top-k 3
    python tools/retrieval_demo.py query-video work_dirs/motion_videos.pt \\
        val_0000.mp4 --captions my_captions.txt
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    # Running from a checkout: use its mmstop even if not installed.
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmstop  # noqa: E402  (registers modules, applies compat patches)
from mmstop.registry import MODELS, TRANSFORMS  # noqa: E402
# yapf: disable
from mmstop.utils.checkpoint import (CheckpointError,  # noqa: E402
                                     load_checkpoint_checked,
                                     safe_torch_load)
# yapf: enable
from mmstop.utils.fileio import atomic_torch_save  # noqa: E402

FORMAT = 'mmstop-retrieval-features'
FORMAT_VERSION = 1
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.mpg',
                    '.mpeg', '.3gp', '.flv', '.wmv')
# pipeline steps that handle text or packing; the video part is the rest
_TEXT_STEPS = ('TokenizeText', 'PackVideoTextInputs', 'PackActionInputs')


class DemoError(Exception):
    """Bad input of the demo; printed as ``error: ...``."""


# ---------------------------------------------------------------------------
# model, pipeline, tokenizer
# ---------------------------------------------------------------------------
def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(config):
        raise DemoError(f'config file {config} does not exist')
    # an overridden top-level variable (num_frames, image_size, ...)
    # re-derives every field computed from it, as in tools/train.py
    return mmstop.utils.config.load_config(config, cfg_options)


def build_model(cfg: Config, checkpoint: str, device: str):
    """The config's model with the checkpoint's weights, in eval mode."""
    if not osp.isfile(checkpoint):
        raise DemoError(f'checkpoint {checkpoint} does not exist')
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = cfg.model.copy()
    if 'backbone' in model_cfg:
        # the checkpoint holds every weight: never read the CLIP file
        model_cfg['backbone'] = dict(model_cfg['backbone'], pretrained=None)
    model = MODELS.build(model_cfg)
    if not hasattr(model, 'encode_video') or not hasattr(model, 'encode_text'):
        raise DemoError(
            f'the config builds a {type(model).__name__}, not a retrieval '
            'model with encode_video / encode_text (e.g. STOPSimilarity)')
    try:
        load_checkpoint_checked(model, checkpoint, logger='silent')
    except (CheckpointError, FileNotFoundError) as exc:
        raise DemoError(str(exc)) from exc
    return model.to(device).eval()


def _test_pipeline(cfg: Config) -> List[dict]:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if loader is None or 'pipeline' not in loader.get('dataset', {}):
        raise DemoError('the config has no test_dataloader.dataset.pipeline')
    return [dict(t) for t in loader['dataset']['pipeline']]


def video_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline without the text and packing steps."""
    steps = [t for t in _test_pipeline(cfg) if t['type'] not in _TEXT_STEPS]
    return Compose([TRANSFORMS.build(t) for t in steps])


def text_tokenizer(cfg: Config):
    """``TokenizeText`` with the context length of the config."""
    for t in _test_pipeline(cfg):
        if t['type'] == 'TokenizeText':
            return TRANSFORMS.build(t)
    return TRANSFORMS.build(dict(type='TokenizeText', context_length=32))


def default_batch_size(cfg: Config) -> int:
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    return int(loader.get('batch_size', 16))


def pick_device(device: Optional[str]) -> str:
    if device:
        return device
    return 'cuda' if torch.cuda.is_available() else 'cpu'


# ---------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------
def list_videos(folder: str,
                extensions: Sequence[str] = VIDEO_EXTENSIONS) -> List[str]:
    """Video files under ``folder`` (relative paths, sorted)."""
    if not osp.isdir(folder):
        raise DemoError(f'video folder {folder} does not exist')
    exts = tuple(e.lower() for e in extensions)
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(exts):
                files.append(osp.relpath(osp.join(root, name), folder))
    if not files:
        raise DemoError(f'no video files ({", ".join(exts)}) in {folder}')
    return sorted(files)


def load_clip(pipeline: Compose, path: str) -> torch.Tensor:
    """Frames ``[T, 3, H, W]`` (uint8 or float, not normalised)."""
    if not osp.isfile(path):
        raise DemoError(f'video {path} does not exist')
    try:
        results = pipeline(dict(filename=path, start_index=0, modality='RGB'))
    except Exception as exc:  # decoder errors name neither the file nor why
        raise DemoError(f'could not read video {path}: '
                        f'{type(exc).__name__}: {exc}') from exc
    return torch.as_tensor(results['imgs'])


@torch.no_grad()
def encode_clips(model, clips: Sequence[torch.Tensor],
                 device: str) -> torch.Tensor:
    """L2-normalised features ``[len(clips), D]`` of one batch."""
    data = model.data_preprocessor(
        dict(inputs=list(clips), data_samples=None), False)
    video, _, _ = model.extract_feat(data['inputs'].to(device))
    return F.normalize(video.float(), dim=-1).cpu()


def encode_videos(model,
                  pipeline: Compose,
                  paths: Sequence[str],
                  batch_size: int,
                  device: str,
                  skip_unreadable=False):
    """L2-normalised video features ``[N, D]``, in batches of
    ``batch_size`` in the order of ``paths`` (the last batch may be
    smaller).

    With ``skip_unreadable`` a video that cannot be read is left out (the
    batches are formed from the readable ones) and the result is
    ``(features, kept paths, [(path, reason), ...])``.
    """
    feats, kept, skipped, clips = [], [], [], []
    for i, path in enumerate(paths):
        try:
            clips.append(load_clip(pipeline, path))
            kept.append(path)
        except DemoError as exc:
            if not skip_unreadable:
                raise
            skipped.append((path, str(exc)))
            print(f'skipping: {exc}')
        if clips and (len(clips) == batch_size or i == len(paths) - 1):
            feats.append(encode_clips(model, clips, device))
            clips = []
    if not skip_unreadable:
        return torch.cat(feats)
    if not kept:
        raise DemoError(f'none of the {len(paths)} video(s) could be read: ' +
                        '; '.join(reason for _, reason in skipped[:5]))
    return torch.cat(feats), kept, skipped


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str],
                 device: str) -> torch.Tensor:
    """L2-normalised text features ``[N, D]``."""
    ids = tokenizer.encode(list(texts)).to(device)
    return F.normalize(model.encode_text(ids).float(), dim=-1).cpu()


def top_k(scores: torch.Tensor, k: int) -> List[int]:
    return torch.argsort(scores, descending=True, stable=True)[:k].tolist()


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
def cmd_embed(args) -> Dict:
    cfg = load_config(args.config, args.cfg_options)
    device = pick_device(args.device)
    model = build_model(cfg, args.checkpoint, device)
    files = list_videos(args.video_dir, args.extensions)
    batch_size = args.batch_size or default_batch_size(cfg)
    if batch_size < 1:
        raise DemoError(f'--batch-size must be >= 1, got {batch_size}')
    batch_dependent = bool(getattr(model, 'batch_dependent', False))
    print(
        f'embedding {len(files)} video(s) from {args.video_dir} in '
        f'batches of {batch_size}' +
        (' (official-mode features depend on the batch: use the same '
         'batch size and folder to compare runs)' if batch_dependent else ''))
    feats, kept, skipped = encode_videos(
        model,
        video_pipeline(cfg), [osp.join(args.video_dir, f) for f in files],
        batch_size,
        device,
        skip_unreadable=True)
    kept = [osp.relpath(p, args.video_dir) for p in kept]
    skipped = [(osp.relpath(p, args.video_dir), why) for p, why in skipped]
    if skipped:
        print(f'skipped {len(skipped)} of {len(files)} video(s) that could '
              'not be read:')
        for name, _ in skipped:
            print(f'  {name}')
    out = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        root=osp.abspath(args.video_dir),
        files=kept,
        skipped=skipped,
        video_features=feats,
        batch_size=batch_size,
        batch_dependent=batch_dependent,
        config=osp.abspath(args.config),
        config_text=cfg.pretty_text,
        checkpoint=osp.abspath(args.checkpoint),
        num_frames=int(getattr(model.backbone, 'num_frames', 0)),
        context_length=int(text_tokenizer(cfg).context_length),
        mmstop_version=mmstop.__version__)
    atomic_torch_save(out, args.out)
    print(f'saved {feats.shape[0]} x {feats.shape[1]} features to {args.out}')
    return out


def load_features(path: str) -> Dict:
    if not osp.isfile(path):
        raise DemoError(f'features file {path} does not exist (make it with '
                        '`retrieval_demo.py embed ... --out FILE`)')
    try:
        data = safe_torch_load(
            path,
            unsafe_hint='`retrieval_demo.py embed` again (its '
            'features files hold only tensors and Python values)')
    except CheckpointError as exc:
        raise DemoError(str(exc)) from exc
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise DemoError(f'{path} is not a features file written by '
                        '`retrieval_demo.py embed`')
    return data


def model_for(features: Dict, args):
    """The model and config that made ``features`` (or --config /
    --checkpoint)."""
    if args.config:
        cfg = load_config(args.config, args.cfg_options)
    else:
        cfg = Config.fromstring(features['config_text'], '.py')
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
    checkpoint = args.checkpoint or features['checkpoint']
    if not osp.isfile(checkpoint):
        raise DemoError(f'checkpoint {checkpoint} does not exist' +
                        ('' if args.checkpoint else
                         ' (recorded in the features file at embed time; pass '
                         '--checkpoint)'))
    device = pick_device(args.device)
    return cfg, build_model(cfg, checkpoint, device), device


def _check_dims(features: Dict, dims: int) -> None:
    stored = features['video_features'].shape[1]
    if stored != dims:
        raise DemoError(f'the model gives {dims}-d features but the '
                        f'features file holds {stored}-d ones: use the '
                        'config and checkpoint of the embedding')


def cmd_query(args) -> List[List[tuple]]:
    empty = [i for i, text in enumerate(args.text) if not text.strip()]
    if empty:
        raise DemoError(f'query text {empty[0] + 1} is empty: give the '
                        'words to search for')
    features = load_features(args.features)
    cfg, model, device = model_for(features, args)
    texts = encode_texts(model, text_tokenizer(cfg), args.text, device)
    _check_dims(features, texts.shape[1])
    scores = texts @ features['video_features'].t()
    k = min(args.top_k, scores.shape[1])
    results = []
    for text, row in zip(args.text, scores):
        print(f'query: {text!r}')
        ranked = [(features['files'][i], float(row[i])) for i in top_k(row, k)]
        for rank, (name, score) in enumerate(ranked, 1):
            print(f'  {rank:>3}. {score:+.4f}  {name}')
        results.append(ranked)
    return results


def read_captions(path: str) -> List[str]:
    if not osp.isfile(path):
        raise DemoError(f'captions file {path} does not exist')
    with open(path, encoding='utf-8') as f:
        captions = [line.strip() for line in f if line.strip()]
    if not captions:
        raise DemoError(f'captions file {path} has no caption (one per line)')
    return captions


def _stored_index(features: Dict, video: str) -> Optional[int]:
    files = features['files']
    if video in files:
        return files.index(video)
    absolute = osp.abspath(video)
    root = features['root']
    if absolute.startswith(root + os.sep):
        rel = osp.relpath(absolute, root)
        if rel in files:
            return files.index(rel)
    matches = [i for i, f in enumerate(files) if osp.basename(f) == video]
    if len(matches) > 1:
        raise DemoError(f'{video!r} matches {len(matches)} embedded files; '
                        'give its path relative to the embedded folder')
    return matches[0] if matches else None


def cmd_query_video(args) -> List[tuple]:
    features = load_features(args.features)
    captions = read_captions(args.captions)
    index = _stored_index(features, args.video)
    if index is None and not osp.isfile(args.video):
        raise DemoError(f'video {args.video} is neither a file of the '
                        f'embedded folder {features["root"]} nor an '
                        'existing file')
    cfg, model, device = model_for(features, args)
    texts = encode_texts(model, text_tokenizer(cfg), captions, device)
    _check_dims(features, texts.shape[1])
    if index is not None:
        video = features['video_features'][index]
        print(f'video: {features["files"][index]} (stored feature, batch '
              f'size {features["batch_size"]})')
    else:
        video = encode_videos(model, video_pipeline(cfg), [args.video], 1,
                              device)[0]
        note = (' (official-mode features depend on the batch: this one '
                'is not comparable with features embedded in batches of '
                f'{features["batch_size"]})' if getattr(
                    model, 'batch_dependent', False) else '')
        print(f'video: {args.video} (encoded alone, batch of 1){note}')
    scores = texts @ video
    k = min(args.top_k, len(captions))
    ranked = [(captions[i], float(scores[i])) for i in top_k(scores, k)]
    for rank, (caption, score) in enumerate(ranked, 1):
        print(f'  {rank:>3}. {score:+.4f}  {caption}')
    return ranked


# ---------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Text-video retrieval demo with a STOP retrieval model',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Examples' + __doc__.split('Examples', 1)[1])
    sub = parser.add_subparsers(dest='command', required=True)

    def common(p, model_required):
        if not model_required:
            p.add_argument(
                '--config',
                help='config instead of the one '
                'stored in the features file')
            p.add_argument(
                '--checkpoint',
                help='checkpoint instead of the '
                'one stored in the features file')
        p.add_argument(
            '--device', help='default: cuda if available, '
            'else cpu')
        p.add_argument(
            '--cfg-options',
            nargs='+',
            action=DictAction,
            help='override config settings, key=value')

    p = sub.add_parser('embed', help='encode a folder of videos once')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('video_dir')
    p.add_argument('--out', required=True, help='features file (.pt)')
    p.add_argument(
        '--batch-size',
        type=int,
        help='videos per batch; '
        'default: the config\'s test batch size')
    p.add_argument(
        '--extensions',
        nargs='+',
        default=list(VIDEO_EXTENSIONS),
        help='video file extensions (default: common ones)')
    common(p, True)

    p = sub.add_parser('query', help='find videos for texts')
    p.add_argument('features')
    p.add_argument('text', nargs='+')
    p.add_argument('--top-k', type=int, default=5)
    common(p, False)

    p = sub.add_parser('query-video', help='rank captions for a video')
    p.add_argument('features')
    p.add_argument(
        'video',
        help='a file of the embedded folder (relative '
        'path or unique base name) or any video file')
    p.add_argument(
        '--captions',
        required=True,
        help='text file, one candidate caption per line')
    p.add_argument('--top-k', type=int, default=5)
    common(p, False)
    args = parser.parse_args(argv)
    if getattr(args, 'top_k', 1) < 1:
        parser.error('--top-k must be >= 1')
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    command = dict(
        embed=cmd_embed, query=cmd_query, **{'query-video':
                                             cmd_query_video})[args.command]
    try:
        return command(args)
    except DemoError as exc:
        parser.exit(2, f'{parser.prog} {args.command}: error: {exc}\n')


if __name__ == '__main__':
    main()
