# Copyright (c) mmstop contributors. All rights reserved.
"""Procedural image-caption pairs for pretraining mmstop's tiny CLIP.

Every image shows one to three objects of one shape, colour, size and texture
at a position on a background; its caption names them through templates
with synonyms, optional attributes and varied word order, e.g.::

    a big red circle on the left
    on a grey background, two small striped blue triangles
    there is a hollow yellow box in the top right corner
    an image of a cross in green, at the bottom

Attributes (:func:`sample_attributes`): shape (:data:`~.shapes.SHAPES`),
colour (:data:`~.shapes.COLOURS`), size (small / large), texture (solid /
striped / outlined), count (1-3), position (one of nine cells of a 3 x 3 grid
for a single object) and background (dark / grey / light).

Some colour-shape pairs (:data:`HELD_OUT_PAIRS`) never occur in the
``'train'`` split; the ``'held_out'`` split draws only those, so zero-shot
classification of the ``'held_out'`` images (:func:`zero_shot_prompts`)
measures whether the model composes colour and shape rather than memorising
pairs. Everything is drawn from ``numpy.random.default_rng([seed, split,
index])``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Dataset

from mmstop.registry import DATASETS
from .shapes import (BACKGROUNDS, COLOURS, SHAPES, TEXTURES, background, paint,
                     shape_mask, texture_mask)

#: Colour-shape pairs that the ``'train'`` split never shows. Among them
#: every held-out colour goes with two held-out shapes and every held-out
#: shape with two held-out colours, so neither attribute alone tells the
#: held-out classes apart; none is a square or circle in a demo-video colour.
HELD_OUT_PAIRS: Tuple[Tuple[str, str],
                      ...] = (('red', 'triangle'), ('red', 'cross'),
                              ('green', 'cross'), ('green', 'diamond'),
                              ('blue', 'diamond'), ('blue', 'triangle'),
                              ('white', 'square'), ('white', 'circle'),
                              ('orange', 'square'), ('orange', 'circle'))
SIZES: Tuple[str, ...] = ('small', 'large')
#: Positions of a single object: cells of a 3 x 3 grid (column, row).
POSITIONS: Dict[str, Tuple[int, int]] = {
    'top left': (0, 0),
    'top': (1, 0),
    'top right': (2, 0),
    'left': (0, 1),
    'centre': (1, 1),
    'right': (2, 1),
    'bottom left': (0, 2),
    'bottom': (1, 2),
    'bottom right': (2, 2)
}
SPLITS = ('train', 'held_out', 'all')

_SHAPE_WORDS = {
    'square': (('square', 'squares'), ('box', 'boxes')),
    'circle': (('circle', 'circles'), ('disc', 'discs')),
    'triangle': (('triangle', 'triangles'), ),
    'cross': (('cross', 'crosses'), ('plus sign', 'plus signs')),
    'diamond': (('diamond', 'diamonds'), ('rhombus', 'rhombuses')),
}
_SIZE_WORDS = {'small': ('small', 'little', 'tiny'), 'large': ('large', 'big')}
_TEXTURE_ADJ = {
    'solid': ('solid', 'filled'),
    'striped': ('striped', ),
    'outlined': ('outlined', 'hollow')
}
_TEXTURE_PP = {
    'solid': ('filled in', ),
    'striped': ('with stripes', ),
    'outlined': ('drawn as an outline', )
}
_COUNT_WORDS = {1: ('a', 'one'), 2: ('two', 'a pair of'), 3: ('three', )}
_POSITION_PP = {
    'top left': ('in the top left corner', 'at the top left'),
    'top': ('at the top', 'near the top edge'),
    'top right': ('in the top right corner', 'at the top right'),
    'left': ('on the left', 'at the left side'),
    'centre': ('in the centre', 'in the middle'),
    'right': ('on the right', 'at the right side'),
    'bottom left': ('in the bottom left corner', 'at the bottom left'),
    'bottom': ('at the bottom', 'near the bottom edge'),
    'bottom right': ('in the bottom right corner', 'at the bottom right'),
}
_BACKGROUND_PP = {
    'dark': ('on a dark background', 'on black'),
    'grey': ('on a grey background', 'on a gray background'),
    'light': ('on a light background', 'on a bright background'),
}
_PREFIXES = ('', '', 'a photo of ', 'an image of ', 'a picture showing ')
_SPLIT_CODES = {'train': 0, 'held_out': 1, 'all': 2}


def colour_shape_pairs(split: str = 'all',
                       held_out: Sequence[Tuple[str, str]] = HELD_OUT_PAIRS
                       ) -> List[Tuple[str, str]]:
    """The colour-shape pairs a split draws from, in a fixed order.

    Args:
        split (str): ``'train'`` (all pairs but ``held_out``),
            ``'held_out'`` or ``'all'``.
        held_out (Sequence[tuple[str, str]]): Held-out pairs. Defaults to
            :data:`HELD_OUT_PAIRS`.

    Returns:
        list[tuple[str, str]]: ``(colour, shape)`` pairs.
    """
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    held = set(tuple(p) for p in held_out)
    unknown = [p for p in held if p[0] not in COLOURS or p[1] not in SHAPES]
    if unknown:
        raise ValueError(
            f'unknown colour or shape in held-out pairs {unknown}')
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    if split == 'train':
        return [p for p in pairs if p not in held]
    if split == 'held_out':
        return [p for p in pairs if p in held]
    return pairs


def sample_attributes(rng: np.random.Generator,
                      pairs: Sequence[Tuple[str, str]]) -> Dict[str, object]:
    """Draw the attributes of one image.

    Args:
        rng (np.random.Generator): Random source.
        pairs (Sequence[tuple[str, str]]): Colour-shape pairs to draw from
            (:func:`colour_shape_pairs`).

    Returns:
        dict: ``colour``, ``shape``, ``size``, ``texture``, ``count``,
        ``position`` (None for more than one object) and ``background``.
    """
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
    # several objects are small so that they fit next to each other
    size = SIZES[int(rng.integers(2))] if count == 1 else 'small'
    position = (
        list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
        if count == 1 else None)
    return dict(
        colour=colour,
        shape=shape,
        size=size,
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        count=count,
        position=position,
        background=list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))])


#: Attributes a hard-negative group (``ShapeCaptionDataset(group_size=...)``)
#: varies, with their probabilities. Shape gets the largest share: without
#: such groups the other attributes tell a batch's captions apart so well
#: that the contrastive loss hardly rewards recognising shapes.
VARIED_ATTRIBUTES: Dict[str, float] = {
    'shape': 0.35,
    'colour': 0.1,
    'size': 0.1,
    'texture': 0.15,
    'position': 0.15,
    'count': 0.1,
    'background': 0.05
}


def vary_attributes(base: Dict[str, object], attribute: str, num: int,
                    rng: np.random.Generator,
                    pairs: Sequence[Tuple[str,
                                          str]]) -> List[Dict[str, object]]:
    """``num`` copies of ``base`` that differ only in ``attribute``.

    The values are distinct while there are enough of them (then they
    repeat); colour and shape keep to ``pairs``. Varying the size or the
    position needs a single object and varying the count sets the others
    consistently (several objects are small and have no position).

    Args:
        base (dict): Attributes from :func:`sample_attributes`.
        attribute (str): A key of :data:`VARIED_ATTRIBUTES`.
        num (int): Number of copies.
        rng (np.random.Generator): Random source.
        pairs (Sequence[tuple[str, str]]): Allowed colour-shape pairs.

    Returns:
        list[dict]: The attribute dicts.
    """
    base = dict(base)
    position = base['position'] or list(POSITIONS)[int(rng.integers(9))]
    if attribute in ('size', 'position') and base['count'] > 1:
        base.update(count=1, position=position)
    values: List[object] = {
        'shape': [sh for c, sh in pairs if c == base['colour']],
        'colour': [c for c, sh in pairs if sh == base['shape']],
        'size': list(SIZES),
        'texture': list(TEXTURES),
        'position': list(POSITIONS),
        'count': [1, 2, 3],
        'background': list(BACKGROUNDS),
    }[attribute]
    order = rng.permutation(len(values))
    out = []
    for j in range(num):
        attrs = dict(base)
        attrs[attribute] = values[order[j % len(values)]]
        if attribute == 'count':
            single = attrs['count'] == 1
            attrs.update(
                position=position if single else None,
                size=base['size'] if single else 'small')
        out.append(attrs)
    return out


def _object_centres(attrs: Dict[str, object], diameter: float, size: int,
                    rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Centres of the objects: the cell of ``position`` (jittered by a fifth
    of a cell), or distinct random cells of the 3 x 3 grid for several
    objects (jittered by a pixel), kept inside the image."""
    lo, hi = diameter / 2, size - 1 - diameter / 2
    cell = size / 3
    if attrs['position'] is not None:
        cells, jitter = [POSITIONS[attrs['position']]], cell / 5
    else:
        cells = [(int(c) % 3, int(c) // 3)
                 for c in rng.permutation(9)[:attrs['count']]]
        jitter = 1.
    return [
        tuple(
            float(
                np.clip((i + 0.5) * cell +
                        rng.uniform(-jitter, jitter), lo, hi))
            for i in col_row) for col_row in cells
    ]


def render_image(attrs: Dict[str, object],
                 rng: np.random.Generator,
                 size: int = 32,
                 noise: float = 8.) -> np.ndarray:
    """Draw the image of ``attrs`` (from :func:`sample_attributes`).

    Args:
        attrs (dict): Attributes.
        rng (np.random.Generator): Random source (sizes, jitter, noise).
        size (int): Image side in pixels. Defaults to 32.
        noise (float): Background noise standard deviation. Defaults to 8.

    Returns:
        np.ndarray: ``[size, size, 3]`` uint8 RGB image.
    """
    image = background(attrs['background'], size, size, rng, noise)
    lo, hi = (0.2, 0.3) if attrs['size'] == 'small' else (0.42, 0.56)
    diameter = rng.uniform(lo, hi) * size
    angle = rng.uniform(-10, 10)
    mask = np.zeros((size, size), np.float32)
    for centre in _object_centres(attrs, diameter, size, rng):
        mask = np.maximum(
            mask,
            shape_mask(
                attrs['shape'], centre, diameter, size, size, angle=angle))
    mask = texture_mask(
        mask, attrs['texture'], diameter, phase=rng.uniform(0, 4))
    paint(image, mask, COLOURS[attrs['colour']])
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(attrs: Dict[str, object],
            rng: np.random.Generator,
            force: Optional[str] = None) -> str:
    """A caption of ``attrs`` from templates with synonyms, optional
    attributes (colour, shape and a count above one are always named) and
    varied word order.

    Args:
        attrs (dict): Attributes from :func:`sample_attributes`.
        rng (np.random.Generator): Random source.
        force (str, optional): An attribute the caption must name
            (``'size'``, ``'texture'``, ``'position'``, ``'background'``;
            the others are always named). Defaults to None.

    Returns:
        str: The caption, lower case.
    """
    count = attrs['count']
    singular, plural = _SHAPE_WORDS[attrs['shape']][int(
        rng.integers(len(_SHAPE_WORDS[attrs['shape']])))]
    noun = singular if count == 1 else plural
    colour = attrs['colour']
    adjectives, modifiers = [], []
    if rng.random() < 0.7 or force == 'size':
        adjectives.append(_pick(rng, _SIZE_WORDS[attrs['size']]))
    solid = attrs['texture'] == 'solid'
    if rng.random() < (0.3 if solid else 0.85) or force == 'texture':
        if rng.random() < 0.6:
            adjectives.append(_pick(rng, _TEXTURE_ADJ[attrs['texture']]))
        else:
            modifiers.append(_pick(rng, _TEXTURE_PP[attrs['texture']]))
    if attrs['position'] is not None and (rng.random() < 0.75
                                          or force == 'position'):
        modifiers.append(_pick(rng, _POSITION_PP[attrs['position']]))
    if rng.random() < 0.5 or force == 'background':
        modifiers.append(_pick(rng, _BACKGROUND_PP[attrs['background']]))
    order = rng.permutation(len(modifiers))
    modifiers = [modifiers[i] for i in order]

    colour_after = rng.random() < 0.2  # "a big square in red"
    if not colour_after:
        if rng.random() < 0.8:
            adjectives.append(colour)  # usual order: colour last
        else:
            adjectives.insert(int(rng.integers(len(adjectives) + 1)), colour)
    det = _pick(rng, _COUNT_WORDS[count])
    if det == 'a' and adjectives and adjectives[0][0] in 'aeiou':
        det = 'an'
    elif det == 'a' and not adjectives and noun[0] in 'aeiou':
        det = 'an'
    phrase = ' '.join([det] + adjectives + [noun])
    if colour_after:
        phrase += f' in {colour}'

    style = rng.random()
    if modifiers and style < 0.25:  # fronted modifier
        text = f'{modifiers[0]}, {phrase}'
        rest = modifiers[1:]
        return ' '.join([text] + rest)
    if style < 0.4:
        verb = 'is' if count == 1 or det == 'a pair of' else 'are'
        return ' '.join([f'there {verb} {phrase}'] + modifiers)
    return _pick(rng, _PREFIXES) + ' '.join([phrase] + modifiers)


def zero_shot_prompts(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """Class prompts ``'a photo of a {colour} {shape}'`` of colour-shape
    pairs, for zero-shot classification."""
    return [f'a photo of a {c} {s}' for c, s in pairs]


@DATASETS.register_module()
class ShapeCaptionDataset(Dataset):
    """Procedural image-caption pairs (module docstring), rendered on access.

    Items come in groups of ``group_size``: the attributes of group ``g``
    are drawn from ``default_rng([seed, split code, g])`` and, for groups of
    more than one item, one attribute (:data:`VARIED_ATTRIBUTES`) differs
    between the items of a group and every caption names it
    (:func:`vary_attributes`). Consecutive items of a contrastive batch are
    then hard negatives of each other. Item ``j`` of the group is rendered
    and captioned from ``default_rng([seed, split code, g, j])``. The
    dataset is deterministic and needs no files.

    Args:
        length (int): Number of items.
        image_size (int): Image side in pixels. Defaults to 32.
        split (str): ``'train'`` (no held-out colour-shape pair),
            ``'held_out'`` (only held-out pairs) or ``'all'``.
            Defaults to ``'train'``.
        seed (int): Seed. Defaults to 0.
        held_out_pairs (Sequence[tuple[str, str]]): The held-out pairs.
            Defaults to :data:`HELD_OUT_PAIRS`.
        noise (float): Background noise standard deviation. Defaults to 8.
        group_size (int): Items per group (see above); 1 draws every item
            independently. Defaults to 1.
    """

    def __init__(self,
                 length: int,
                 image_size: int = 32,
                 split: str = 'train',
                 seed: int = 0,
                 held_out_pairs: Sequence[Tuple[str, str]] = HELD_OUT_PAIRS,
                 noise: float = 8.,
                 group_size: int = 1) -> None:
        if length < 0:
            raise ValueError(f'length must be >= 0, got {length}')
        if image_size < 8:
            raise ValueError(f'image_size must be >= 8, got {image_size}')
        self.length = int(length)
        self.image_size = int(image_size)
        self.split = split
        self.seed = int(seed)
        if group_size < 1:
            raise ValueError(f'group_size must be >= 1, got {group_size}')
        self.noise = float(noise)
        self.group_size = int(group_size)
        self.pairs = colour_shape_pairs(split, held_out_pairs)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, object]:
        """``dict(img=[H, W, 3] uint8 RGB, text=str, attributes=dict)``."""
        if not 0 <= index < self.length:
            raise IndexError(f'index {index} out of range [0, {self.length})')
        group, member = divmod(int(index), self.group_size)
        key = [self.seed, _SPLIT_CODES[self.split], group]
        rng = np.random.default_rng(key)
        attrs = sample_attributes(rng, self.pairs)
        varied = None
        if self.group_size > 1:
            names = list(VARIED_ATTRIBUTES)
            varied = names[int(
                rng.choice(len(names), p=list(VARIED_ATTRIBUTES.values())))]
            attrs = vary_attributes(attrs, varied, self.group_size, rng,
                                    self.pairs)[member]
        rng = np.random.default_rng(key + [member])
        img = render_image(attrs, rng, self.image_size, self.noise)
        return dict(
            img=img, text=caption(attrs, rng, force=varied), attributes=attrs)
