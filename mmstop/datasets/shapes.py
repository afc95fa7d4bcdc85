# Copyright (c) mmstop contributors. All rights reserved.
"""Drawing primitives of mmstop's procedural pretraining data.

Anti-aliased masks of simple shapes (:func:`shape_mask`), textures
(:func:`texture_mask`) and backgrounds (:func:`background`), shared by the
image-caption generator of the tiny CLIP
(:mod:`mmstop.datasets.shape_captions`) and the video generator of the tiny
VideoMamba (:mod:`mmstop.datasets.motion_pretrain`). The colour and shape
names extend those of the demo videos (:mod:`mmstop.datasets.demo`) with the
same RGB values, so the pretrained models have seen the downstream objects'
colours.
"""
import math
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from .demo import COLOURS as DEMO_COLOURS

#: RGB values of the colour names; the demo's six plus white and orange.
COLOURS: Dict[str, Tuple[int, int, int]] = dict(
    DEMO_COLOURS, white=(235, 235, 235), orange=(245, 140, 30))
#: Shape names :func:`shape_mask` draws.
SHAPES: Tuple[str, ...] = ('square', 'circle', 'triangle', 'cross', 'diamond')
#: Texture names :func:`texture_mask` applies.
TEXTURES: Tuple[str, ...] = ('solid', 'striped', 'outlined')
#: Background names and their grey-level ranges (before noise).
BACKGROUNDS: Dict[str, Tuple[float, float]] = {
    'dark': (10., 50.),
    'grey': (95., 135.),
    'light': (185., 225.),
}

# polygon vertices of the unit shapes (radius 1 around the origin)
_POLYGONS = {
    'square':
    np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) *
    math.sqrt(0.5) * 1.2,
    'triangle':
    np.array([[0, -1], [math.sqrt(3) / 2, 0.5], [-math.sqrt(3) / 2, 0.5]],
             np.float64) * 1.15,
    'diamond':
    np.array([[0, -1], [0.75, 0], [0, 1], [-0.75, 0]], np.float64),
    'cross':
    np.array([[-0.33, -1], [0.33, -1], [0.33, -0.33], [1, -0.33], [1, 0.33],
              [0.33, 0.33], [0.33, 1], [-0.33, 1], [-0.33, 0.33], [-1, 0.33],
              [-1, -0.33], [-0.33, -0.33]], np.float64),
}


def shape_mask(shape: str,
               centre: Sequence[float],
               size: float,
               height: int,
               width: int,
               angle: float = 0.,
               outline: float = 0.,
               supersample: int = 4) -> np.ndarray:
    """Coverage mask of one shape, anti-aliased by supersampling.

    Args:
        shape (str): One of :data:`SHAPES`.
        centre (Sequence[float]): ``(x, y)`` centre in pixels.
        size (float): Diameter of the shape's bounding circle in pixels.
        height (int): Mask height.
        width (int): Mask width.
        angle (float): Rotation in degrees (clockwise on the image).
            Defaults to 0.
        outline (float): If > 0, only an outline of this thickness in pixels
            is drawn. Defaults to 0 (filled).
        supersample (int): Drawing resolution factor. Defaults to 4.

    Returns:
        np.ndarray: ``[height, width]`` float32 coverage in [0, 1].
    """
    if shape not in SHAPES:
        raise ValueError(f'unknown shape {shape!r}; choose from {SHAPES}')
    s = int(supersample)
    canvas = np.zeros((height * s, width * s), np.uint8)
    cx, cy = (float(centre[0]) + 0.5) * s, (float(centre[1]) + 0.5) * s
    radius = 0.5 * float(size) * s
    thickness = -1 if outline <= 0 else max(int(round(outline * s)), 1)
    if shape == 'circle':
        cv2.circle(canvas, (int(round(cx)), int(round(cy))),
                   max(int(round(radius)), 1), 255, thickness)
    else:
        theta = math.radians(angle)
        rot = np.array([[math.cos(theta), -math.sin(theta)],
                        [math.sin(theta), math.cos(theta)]])
        points = _POLYGONS[shape] @ rot.T * radius + (cx, cy)
        points = np.round(points).astype(np.int32)[None]
        if thickness < 0:
            cv2.fillPoly(canvas, points, 255)
        else:
            cv2.polylines(canvas, points, True, 255, thickness)
    mask = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return mask.astype(np.float32) / 255.


def texture_mask(mask: np.ndarray,
                 texture: str,
                 size: float,
                 phase: float = 0.) -> np.ndarray:
    """Apply a texture to a filled coverage mask.

    Args:
        mask (np.ndarray): Filled coverage mask ``[H, W]`` in [0, 1].
        texture (str): ``'solid'`` (unchanged), ``'striped'`` (horizontal
            stripes of half-period ``max(1, size / 6)`` pixels, every other
            stripe at 30 % coverage so the silhouette stays visible) or
            ``'outlined'`` (the mask minus its erosion).
        size (float): Shape size in pixels (sets the stripe width and the
            outline thickness).
        phase (float): Stripe offset in pixels. Defaults to 0.

    Returns:
        np.ndarray: The textured mask, same shape.
    """
    if texture == 'solid':
        return mask
    if texture == 'striped':
        half = max(1.0, size / 6.)
        rows = np.arange(mask.shape[0], dtype=np.float32)[:, None]
        stripes = np.where(np.floor((rows + phase) / half) % 2 == 0, 1.,
                           0.3).astype(np.float32)
        return mask * stripes
    if texture == 'outlined':
        thickness = max(1, int(round(size / 8.)))
        kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
        inner = cv2.erode((mask > 0.5).astype(np.uint8), kernel)
        return mask * (1. - inner.astype(np.float32))
    raise ValueError(f'unknown texture {texture!r}; choose from {TEXTURES}')


def background(name: str,
               height: int,
               width: int,
               rng: np.random.Generator,
               noise: float = 8.) -> np.ndarray:
    """A flat background of a random grey level in the named range, with a
    slight random colour tint and Gaussian pixel noise.

    Args:
        name (str): One of :data:`BACKGROUNDS`.
        height (int): Image height.
        width (int): Image width.
        rng (np.random.Generator): Random source.
        noise (float): Pixel noise standard deviation. Defaults to 8.

    Returns:
        np.ndarray: ``[height, width, 3]`` float32 RGB.
    """
    lo, hi = BACKGROUNDS[name]
    level = rng.uniform(lo, hi) + rng.uniform(-8, 8, size=3)
    image = np.empty((height, width, 3), np.float32)
    image[:] = level
    if noise > 0:
        image += rng.normal(0., noise, size=image.shape).astype(np.float32)
    return image


def paint(image: np.ndarray, mask: np.ndarray,
          colour: Sequence[float]) -> np.ndarray:
    """Blend ``colour`` into ``image`` ``[H, W, 3]`` through ``mask``
    ``[H, W]`` (in place) and return it."""
    m = mask[..., None]
    image *= 1. - m
    image += m * np.asarray(colour, np.float32)
    return image
