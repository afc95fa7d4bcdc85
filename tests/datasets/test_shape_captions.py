# Copyright (c) mmstop contributors. All rights reserved.
import numpy as np
import pytest

from mmstop.datasets import ShapeCaptionDataset
from mmstop.datasets.shape_captions import (HELD_OUT_PAIRS, POSITIONS,
                                            VARIED_ATTRIBUTES, caption,
                                            colour_shape_pairs, render_image,
                                            sample_attributes, vary_attributes,
                                            zero_shot_prompts)
from mmstop.datasets.shapes import COLOURS, SHAPES
from mmstop.registry import DATASETS

_SHAPE_WORDS = {
    'square': ('square', 'box'),
    'circle': ('circle', 'disc'),
    'triangle': ('triangle', ),
    'cross': ('cross', 'plus sign'),
    'diamond': ('diamond', 'rhombus')
}


def test_pairs_split_held_out_pairs():
    every = colour_shape_pairs('all')
    train = colour_shape_pairs('train')
    held = colour_shape_pairs('held_out')
    assert len(every) == len(COLOURS) * len(SHAPES)
    assert set(held) == set(HELD_OUT_PAIRS)
    assert set(train) | set(held) == set(every)
    assert not set(train) & set(held)
    # neither colour nor shape alone tells the held-out pairs apart, and
    # every held-out colour and shape is seen in training with others
    for c, s in HELD_OUT_PAIRS:
        assert sum(p[0] == c for p in HELD_OUT_PAIRS) == 2
        assert sum(p[1] == s for p in HELD_OUT_PAIRS) == 2
        assert any(p[0] == c for p in train)
        assert any(p[1] == s for p in train)
    with pytest.raises(ValueError, match='split'):
        colour_shape_pairs('test')


def test_dataset_is_deterministic_and_registered():
    data = DATASETS.build(dict(type='ShapeCaptionDataset', length=6, seed=3))
    again = ShapeCaptionDataset(6, seed=3)
    other = ShapeCaptionDataset(6, seed=4)
    for i in range(6):
        a, b = data[i], again[i]
        assert a['img'].shape == (32, 32, 3) and a['img'].dtype == np.uint8
        np.testing.assert_array_equal(a['img'], b['img'])
        assert a['text'] == b['text'] and a['attributes'] == b['attributes']
    assert any(data[i]['text'] != other[i]['text'] for i in range(6))
    with pytest.raises(IndexError):
        data[6]


@pytest.mark.parametrize('split', ['train', 'held_out'])
def test_captions_name_colour_shape_and_count(split):
    data = ShapeCaptionDataset(60, split=split, seed=1)
    allowed = set(colour_shape_pairs(split))
    for i in range(len(data)):
        item = data[i]
        attrs, text = item['attributes'], item['text']
        assert (attrs['colour'], attrs['shape']) in allowed
        assert attrs['colour'] in text.split()
        assert any(w in text for w in _SHAPE_WORDS[attrs['shape']])
        if attrs['count'] == 3:
            assert 'three' in text
        elif attrs['count'] == 2:
            assert 'two' in text or 'pair' in text
        assert (attrs['position'] is None) == (attrs['count'] > 1)


def test_captions_vary_word_order_and_synonyms():
    rng = np.random.default_rng(0)
    attrs = dict(
        colour='red',
        shape='square',
        size='large',
        texture='striped',
        count=1,
        position='top left',
        background='dark')
    texts = {caption(attrs, rng) for _ in range(200)}
    assert len(texts) > 50
    assert any(
        t.startswith('in the top left') or t.startswith('at the top')
        for t in texts)  # fronted position
    assert any('box' in t for t in texts) and any('square' in t for t in texts)
    assert any('in red' in t for t in texts)  # colour after the noun
    for name in ('size', 'texture', 'position', 'background'):
        words = {
            'size': ('large', 'big'),
            'texture': ('striped', 'stripes'),
            'position': ('top left', ),
            'background': ('dark', 'black')
        }
        for _ in range(20):
            text = caption(attrs, rng, force=name)
            assert any(w in text for w in words[name]), (name, text)


def test_render_draws_the_object_in_its_cell():
    rng = np.random.default_rng(0)
    for position, (col, row) in POSITIONS.items():
        attrs = dict(
            colour='red',
            shape='square',
            size='small',
            texture='solid',
            count=1,
            position=position,
            background='dark')
        img = render_image(attrs, rng, size=48, noise=0.).astype(float)
        mask = img[..., 0] - img[..., 1] > 100  # red on a dark background
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 10
        assert int(xs.mean() // 16) == col and int(ys.mean() // 16) == row


def test_groups_differ_in_one_attribute_that_captions_name():
    data = ShapeCaptionDataset(400, group_size=4, seed=2)
    seen = set()
    for group in range(100):
        items = [data[group * 4 + j] for j in range(4)]
        attrs = [it['attributes'] for it in items]
        keys = [k for k in attrs[0] if len({str(a[k]) for a in attrs}) > 1]
        varied = set(keys) - {'position', 'size'} if 'count' in keys else \
            set(keys)
        assert len(varied) <= 1, keys
        seen |= varied
        for a in attrs:
            assert (a['colour'], a['shape']) in set(data.pairs)
    assert seen == set(VARIED_ATTRIBUTES)


def test_vary_attributes_keeps_attributes_consistent():
    rng = np.random.default_rng(0)
    pairs = colour_shape_pairs('train')
    base = sample_attributes(rng, pairs)
    base.update(count=3, position=None, size='small')
    for attr in ('size', 'position'):
        for a in vary_attributes(base, attr, 4, rng, pairs):
            assert a['count'] == 1 and a['position'] is not None
    counts = vary_attributes(base, 'count', 3, rng, pairs)
    assert sorted(a['count'] for a in counts) == [1, 2, 3]
    for a in counts:
        assert (a['position'] is None) == (a['count'] > 1)
    shapes = vary_attributes(dict(base, colour='red'), 'shape', 4, rng, pairs)
    assert {a['shape'] for a in shapes} == {s for c, s in pairs if c == 'red'}


def test_zero_shot_prompts():
    assert zero_shot_prompts([('red', 'cross')]) == ['a photo of a red cross']


def test_bad_arguments():
    with pytest.raises(ValueError, match='group_size'):
        ShapeCaptionDataset(4, group_size=0)
    with pytest.raises(ValueError, match='unknown colour or shape'):
        colour_shape_pairs('train', [('purple', 'square')])
