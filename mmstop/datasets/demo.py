# Copyright (c) mmstop contributors. All rights reserved.
"""A tiny synthetic video dataset for demos, smoke tests and CI.

:func:`generate_demo_dataset` renders short clips of one coloured shape on a
noisy dark background. The class of a clip is its motion (moving up, moving
down, growing, ...); by default every class also has its own colour and shape
so that even a frame-level model learns something within a few CPU epochs
(``appearance='random'`` draws colour and shape per video, leaving motion as
the only cue). All classes are invariant to horizontal flips unless
``'moving right'``/``'moving left'`` are among them (``num_classes > 4``).

Layout written under ``root``::

    videos/train_0000.mp4 ...   # cv2 'mp4v', ``num_frames`` frames each
    videos/val_0000.mp4 ...
    train.txt, val.txt          # VideoDataset lists: ``name.mp4 label``
    classnames.txt              # one human-readable class name per line
    captions_train.json         # [{"filename": "train_0000.mp4",
    captions_val.json           #   "captions": ["a red square moving up",
                                #                ...]}, ...]

Paths in the lists and caption files are relative to ``videos/`` (use it as
``data_prefix=dict(video=...)``). Everything is drawn from
``numpy.random.default_rng([seed, split, index])``, so the same arguments give
byte-identical files on the same OpenCV build.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

# name, motion kind, default shape, default colour
DEMO_CLASSES: Tuple[Tuple[str, str, str, str], ...] = (
    ('moving up', 'up', 'square', 'red'),
    ('moving down', 'down', 'circle', 'green'),
    ('growing', 'grow', 'square', 'blue'),
    ('shrinking', 'shrink', 'circle', 'yellow'),
    ('moving right', 'right', 'square', 'magenta'),
    ('moving left', 'left', 'circle', 'cyan'),
)

COLOURS: Dict[str, Tuple[int, int, int]] = {  # RGB
    'red': (230, 40, 40),
    'green': (40, 210, 60),
    'blue': (50, 90, 240),
    'yellow': (235, 225, 40),
    'magenta': (220, 50, 220),
    'cyan': (40, 220, 230),
}
SHAPES = ('square', 'circle')

# (short phrase used as "a red square <phrase>", full-sentence verb phrase)
_MOTION_PHRASES = {
    'up': (('moving up', 'rising'), ('moves up', 'rises towards the top')),
    'down':
    (('moving down', 'falling'), ('moves down', 'drops towards the bottom')),
    'right': (('moving right', 'sliding to the right'), ('moves to the right',
                                                         'slides right')),
    'left': (('moving left', 'sliding to the left'), ('moves to the left',
                                                      'slides left')),
    'grow': (('growing', 'getting bigger'), ('grows', 'expands')),
    'shrink': (('shrinking', 'getting smaller'), ('shrinks', 'contracts')),
}
_SPLIT_CODES = {'train': 0, 'val': 1}


def _render_clip(motion: str, shape: str, colour: Sequence[int],
                 rng: np.random.Generator, num_frames: int, width: int,
                 height: int, noise: float) -> Tuple[List[np.ndarray], bool]:
    """Draw one clip as a list of BGR uint8 frames; also return 'fast'."""
    short = min(width, height)
    speed = rng.uniform(0.45, 0.75)  # fraction of the travel range covered
    fast = speed > 0.6
    if motion in ('grow', 'shrink'):
        small, large = 0.12 * short, (0.12 + 0.4 * speed) * short
        sizes = np.linspace(small, large, num_frames)
        if motion == 'shrink':
            sizes = sizes[::-1]
        margin = large / 2 + 1
        cx = rng.uniform(margin, width - margin)
        cy = rng.uniform(margin, height - margin)
        centres = np.tile([cx, cy], (num_frames, 1))
    else:
        size = rng.uniform(0.16, 0.24) * short
        sizes = np.full(num_frames, size)
        axis = 1 if motion in ('up', 'down') else 0
        extent = (width, height)[axis]
        lo, hi = size / 2 + 1, extent - size / 2 - 1
        travel = speed * (hi - lo)
        start = rng.uniform(lo, hi - travel)
        path = np.linspace(start, start + travel, num_frames)
        if motion in ('up', 'left'):
            path = path[::-1]
        other_extent = (width, height)[1 - axis]
        other = rng.uniform(size / 2 + 1, other_extent - size / 2 - 1)
        centres = np.empty((num_frames, 2))
        centres[:, axis] = path
        centres[:, 1 - axis] = other
    background = rng.uniform(10, 50, size=3)
    bgr = tuple(int(c) for c in colour[::-1])
    frames = []
    for (cx, cy), s in zip(centres, sizes):
        frame = np.empty((height, width, 3), np.float32)
        frame[:] = background
        frame += rng.normal(0.0, noise, size=frame.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        half = s / 2
        if shape == 'square':
            top_left = (int(round(cx - half)), int(round(cy - half)))
            bottom_right = (int(round(cx + half)), int(round(cy + half)))
            cv2.rectangle(frame, top_left, bottom_right, bgr, -1)
        else:
            cv2.circle(frame, (int(round(cx)), int(round(cy))),
                       max(int(round(half)), 1), bgr, -1, cv2.LINE_AA)
        frames.append(frame)
    return frames, fast


def _captions(motion: str, shape: str, colour: str, fast: bool,
              rng: np.random.Generator) -> List[str]:
    """Two or three distinct captions describing one clip."""
    short_phrases, verb_phrases = _MOTION_PHRASES[motion]
    speed = 'quickly' if fast else 'slowly'
    candidates = [
        f'a {colour} {shape} {short_phrases[0]}',
        f'the {colour} {shape} {speed} {verb_phrases[0]}',
        f'a {shape} in {colour} {short_phrases[1]} on a dark background',
        f'a {colour} {shape} {verb_phrases[1]} {speed}',
    ]
    num = int(rng.integers(2, 4))
    order = rng.permutation(len(candidates))[:num]
    return [candidates[i] for i in sorted(order)]


def write_video(path: str, frames: List[np.ndarray], fps: float) -> None:
    """Write BGR ``uint8`` frames ``[H, W, 3]`` to an mp4 file (OpenCV,
    codec ``mp4v``, which decord reads).

    Args:
        path (str): Output file.
        frames (list[np.ndarray]): The frames, all of one size.
        fps (float): Frame rate.

    Raises:
        RuntimeError: OpenCV cannot open a writer (a build without FFmpeg).
    """
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (width, height))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV could not open a video writer for {path} '
                           "with codec 'mp4v' (is this OpenCV build without "
                           'FFmpeg?)')
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def _check_decodable(path: str, num_frames: int) -> None:
    """Fail early if decord (MMAction2's video reader) cannot read ``path``.

    decord 0.6.0 cannot copy out frames of some narrow widths (e.g. 16, 24,
    48, 72 pixels) of these mp4v files although OpenCV reads them.
    """
    try:
        import decord
    except ImportError:  # decord is a dependency; nothing to check without
        return
    try:
        frames = decord.VideoReader(path).get_batch([0, num_frames - 1])
        frames.asnumpy()
    except Exception as exc:
        cause = f'{type(exc).__name__}: {str(exc).splitlines()[0][:200]}'
        raise RuntimeError(
            f'decord cannot decode the generated {path} ({cause}); '
            'decord 0.6.0 fails on some frame widths (16, 24, 48, 72, ...): '
            'choose another size, e.g. 64') from exc


def generate_demo_dataset(root: str,
                          num_classes: int = 4,
                          train_per_class: int = 4,
                          val_per_class: int = 2,
                          num_frames: int = 16,
                          size: Union[int, Tuple[int, int]] = 64,
                          fps: float = 8.0,
                          seed: int = 0,
                          appearance: str = 'class',
                          noise: float = 8.0) -> Dict[str, object]:
    """Write the synthetic demo dataset under ``root`` (see module docstring).

    Args:
        root (str): Output directory; created if needed. Existing files of the
            same names are overwritten.
        num_classes (int): Number of motion classes, taken in order from
            :data:`DEMO_CLASSES` (at most ``len(DEMO_CLASSES)``).
            Defaults to 4.
        train_per_class (int): Training videos per class. Defaults to 4.
        val_per_class (int): Validation videos per class. Defaults to 2.
        num_frames (int): Frames per video. Defaults to 16.
        size (int | tuple[int, int]): Frame size, ``S`` or ``(width,
            height)``. Defaults to 64.
        fps (float): Frame rate written into the files. Defaults to 8.0.
        seed (int): Integer seed; every video gets its own generator seeded
            with ``[seed, split, index]``. Defaults to 0.
        appearance (str): ``'class'``: each class has a fixed colour and
            shape (easy); ``'random'``: colour and shape are drawn per video,
            so only the motion tells the classes apart. Defaults to
            ``'class'``.
        noise (float): Standard deviation of the per-pixel Gaussian noise.
            Defaults to 8.0.

    Returns:
        dict: ``root``, ``video_dir``, ``train_ann``, ``val_ann``,
        ``classnames_file``, ``captions_train``, ``captions_val`` (paths) and
        ``classes`` (tuple of class names).

    Raises:
        RuntimeError: If OpenCV cannot write mp4v, or decord cannot read the
            first generated video back (some frame widths).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f'seed must be an integer, got {seed!r}')
    if not 1 <= num_classes <= len(DEMO_CLASSES):
        raise ValueError(f'num_classes must be in [1, {len(DEMO_CLASSES)}], '
                         f'got {num_classes}')
    if appearance not in ('class', 'random'):
        raise ValueError("appearance must be 'class' or 'random', got "
                         f'{appearance!r}')
    if num_frames < 2:
        raise ValueError(f'num_frames must be >= 2, got {num_frames}')
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < 16:
        raise ValueError(f'frame size must be at least 16 pixels, got {size}')
    for name, value in (('train_per_class', train_per_class), ('val_per_class',
                                                               val_per_class)):
        if value < 0:
            raise ValueError(f'{name} must be >= 0, got {value}')

    classes = DEMO_CLASSES[:num_classes]
    video_dir = osp.join(root, 'videos')
    os.makedirs(video_dir, exist_ok=True)
    out = dict(
        root=root,
        video_dir=video_dir,
        train_ann=osp.join(root, 'train.txt'),
        val_ann=osp.join(root, 'val.txt'),
        classnames_file=osp.join(root, 'classnames.txt'),
        captions_train=osp.join(root, 'captions_train.json'),
        captions_val=osp.join(root, 'captions_val.json'),
        classes=tuple(c[0] for c in classes))

    checked = False
    for split, per_class in (('train', train_per_class), ('val',
                                                          val_per_class)):
        lines, captions = [], []
        index = 0
        for label, (_, motion, cls_shape, cls_colour) in enumerate(classes):
            for _ in range(per_class):
                rng = np.random.default_rng(
                    [int(seed), _SPLIT_CODES[split], index])
                if appearance == 'class':
                    shape, colour = cls_shape, cls_colour
                else:
                    shape = SHAPES[int(rng.integers(len(SHAPES)))]
                    colour = sorted(COLOURS)[int(rng.integers(len(COLOURS)))]
                frames, fast = _render_clip(motion, shape, COLOURS[colour],
                                            rng, num_frames, width, height,
                                            noise)
                name = f'{split}_{index:04d}.mp4'
                write_video(osp.join(video_dir, name), frames, fps)
                if not checked:
                    _check_decodable(osp.join(video_dir, name), num_frames)
                    checked = True
                lines.append(f'{name} {label}')
                captions.append(
                    dict(
                        filename=name,
                        captions=_captions(motion, shape, colour, fast, rng)))
                index += 1
        with open(out[f'{split}_ann'], 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
        with open(out[f'captions_{split}'], 'w') as f:
            json.dump(captions, f, indent=1)
            f.write('\n')
    with open(out['classnames_file'], 'w') as f:
        f.write(''.join(name + '\n' for name in out['classes']))
    return out
