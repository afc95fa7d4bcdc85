# Copyright (c) mmstop contributors. All rights reserved.
"""Procedural pretraining videos for mmstop's tiny VideoMamba.

A supervised video set in the role Kinetics-400 plays for the published
VideoMamba models: every clip shows one object on a background, and its class
is the pair (shape, motion) (:func:`pretrain_classes`), so a model has to
recognise both appearance and motion. The motions are disjoint from the
classes of the downstream demo videos (:data:`mmstop.datasets.DEMO_CLASSES`:
moving up / down / left / right, growing, shrinking):

* ``'moving up-left'``, ``'moving up-right'``, ``'moving down-left'``,
  ``'moving down-right'``: diagonal translations;
* ``'rotating clockwise'``, ``'rotating anticlockwise'``: rotation in place;
* ``'appearing'``, ``'disappearing'``: fading in or out.

Colour (:data:`~.shapes.COLOURS`), texture, background, size, speed and
position are drawn per clip. Item ``i`` of a split is drawn from
``numpy.random.default_rng([seed, split code, i])``.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np
from torch.utils.data import Dataset

from mmstop.registry import DATASETS
from .shapes import (BACKGROUNDS, COLOURS, TEXTURES, background, paint,
                     shape_mask, texture_mask)

#: Motions of the pretraining classes (none is a downstream demo class).
PRETRAIN_MOTIONS: Tuple[str,
                        ...] = ('moving up-left', 'moving up-right',
                                'moving down-left', 'moving down-right',
                                'rotating clockwise', 'rotating anticlockwise',
                                'appearing', 'disappearing')
#: Shapes of the pretraining classes (not rotation-invariant, so that the
#: rotation classes are visible).
PRETRAIN_SHAPES: Tuple[str, ...] = ('square', 'triangle', 'cross')
_DIAGONALS = {
    'moving up-left': (-1, -1),
    'moving up-right': (1, -1),
    'moving down-left': (-1, 1),
    'moving down-right': (1, 1)
}
_SPLIT_CODES = {'train': 0, 'val': 1}


def pretrain_classes(motions: Sequence[str] = PRETRAIN_MOTIONS,
                     shapes: Sequence[str] = PRETRAIN_SHAPES
                     ) -> List[Tuple[str, str]]:
    """The ``(shape, motion)`` classes in label order (motion-major).

    Args:
        motions (Sequence[str]): Motions, a subset of
            :data:`PRETRAIN_MOTIONS`. Defaults to all.
        shapes (Sequence[str]): Shapes. Defaults to
            :data:`PRETRAIN_SHAPES`.

    Returns:
        list[tuple[str, str]]: ``(shape, motion)`` per label.
    """
    unknown = [m for m in motions if m not in PRETRAIN_MOTIONS]
    if unknown:
        raise ValueError(f'unknown motions {unknown}; choose from '
                         f'{PRETRAIN_MOTIONS}')
    return [(s, m) for m in motions for s in shapes]


def render_motion_clip(shape: str,
                       motion: str,
                       rng: np.random.Generator,
                       num_frames: int = 8,
                       size: int = 32,
                       noise: float = 8.) -> np.ndarray:
    """Draw one clip of ``shape`` performing ``motion``.

    Args:
        shape (str): A shape of :data:`~.shapes.SHAPES`.
        motion (str): One of :data:`PRETRAIN_MOTIONS`.
        rng (np.random.Generator): Random source (appearance, path, noise).
        num_frames (int): Frames. Defaults to 8.
        size (int): Frame side in pixels. Defaults to 32.
        noise (float): Pixel noise standard deviation. Defaults to 8.

    Returns:
        np.ndarray: ``[num_frames, size, size, 3]`` uint8 RGB frames.
    """
    if motion not in PRETRAIN_MOTIONS:
        raise ValueError(f'unknown motion {motion!r}; choose from '
                         f'{PRETRAIN_MOTIONS}')
    colour = COLOURS[list(COLOURS)[int(rng.integers(len(COLOURS)))]]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    bg_name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    diameter = rng.uniform(0.22, 0.36) * size
    radius = diameter / 2
    lo, hi = radius, size - 1 - radius
    t = np.linspace(0., 1., num_frames)
    angles = np.full(num_frames, rng.uniform(-10, 10))
    alphas = np.ones(num_frames)
    if motion in _DIAGONALS:
        dx, dy = _DIAGONALS[motion]
        travel = rng.uniform(0.35, 0.6) * (hi - lo)
        start = [
            rng.uniform(lo, hi -
                        travel) if d > 0 else rng.uniform(lo + travel, hi)
            for d in (dx, dy)
        ]
        centres = np.stack(
            [start[0] + dx * travel * t, start[1] + dy * travel * t], axis=1)
    else:
        centres = np.tile([rng.uniform(lo, hi),
                           rng.uniform(lo, hi)], (num_frames, 1))
        if motion.startswith('rotating'):
            sign = 1. if motion == 'rotating clockwise' else -1.
            angles = angles + sign * rng.uniform(50, 80) * t
        else:  # fade in / out between two random frames
            a = rng.uniform(0., 0.3)
            b = rng.uniform(0.7, 1.)
            alphas = np.clip((t - a) / (b - a), 0., 1.)
            if motion == 'disappearing':
                alphas = alphas[::-1]
    back = background(bg_name, size, size, rng, noise=0.)
    phase = rng.uniform(0, 4)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        frame = back.copy()
        if noise > 0:
            frame += rng.normal(0., noise, size=frame.shape).astype(np.float32)
        mask = shape_mask(
            shape, centres[i], diameter, size, size, angle=angles[i])
        mask = texture_mask(mask, texture, diameter, phase=phase)
        paint(frame, mask * alphas[i], colour)
        frames[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return frames


@DATASETS.register_module()
class MotionPretrainDataset(Dataset):
    """Procedural (shape, motion) clips (module docstring), drawn on access.

    Labels are balanced: item ``i`` has label ``i % num_classes``.

    Args:
        length (int): Number of clips.
        num_frames (int): Frames per clip. Defaults to 8.
        image_size (int): Frame side in pixels. Defaults to 32.
        split (str): ``'train'`` or ``'val'`` (another random stream).
            Defaults to ``'train'``.
        seed (int): Seed. Defaults to 0.
        motions (Sequence[str]): Motions. Defaults to
            :data:`PRETRAIN_MOTIONS`.
        shapes (Sequence[str]): Shapes. Defaults to
            :data:`PRETRAIN_SHAPES`.
        noise (float): Pixel noise standard deviation. Defaults to 8.
    """

    def __init__(self,
                 length: int,
                 num_frames: int = 8,
                 image_size: int = 32,
                 split: str = 'train',
                 seed: int = 0,
                 motions: Sequence[str] = PRETRAIN_MOTIONS,
                 shapes: Sequence[str] = PRETRAIN_SHAPES,
                 noise: float = 8.) -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f'split must be one of {tuple(_SPLIT_CODES)}, '
                             f'got {split!r}')
        if length < 0 or num_frames < 2 or image_size < 8:
            raise ValueError('need length >= 0, num_frames >= 2 and '
                             f'image_size >= 8, got {length}, {num_frames}, '
                             f'{image_size}')
        self.length = int(length)
        self.num_frames = int(num_frames)
        self.image_size = int(image_size)
        self.split = split
        self.seed = int(seed)
        self.noise = float(noise)
        self.classes = pretrain_classes(motions, shapes)

    @property
    def class_names(self) -> List[str]:
        """``'{shape} {motion}'`` per label."""
        return [f'{s} {m}' for s, m in self.classes]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, object]:
        """``dict(imgs=[T, H, W, 3] uint8 RGB, label=int)``."""
        if not 0 <= index < self.length:
            raise IndexError(f'index {index} out of range [0, {self.length})')
        label = int(index) % len(self.classes)
        rng = np.random.default_rng(
            [self.seed, _SPLIT_CODES[self.split],
             int(index)])
        shape, motion = self.classes[label]
        imgs = render_motion_clip(shape, motion, rng, self.num_frames,
                                  self.image_size, self.noise)
        return dict(imgs=imgs, label=label)
