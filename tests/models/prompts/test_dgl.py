# Copyright (c) mmstop contributors. All rights reserved.
"""DGL prompt generator and adapter (the machinery the official STOP uses)."""
import pytest
import torch

from mmstop.models.prompts import Adapter, DGLPromptGenerator

D, TEXT, LAYERS, T = 32, 24, 3, 5


def generator(mode, **kwargs):
    return DGLPromptGenerator(mode, D, TEXT, LAYERS, T, num_heads=2, **kwargs)


@pytest.mark.parametrize('postfix', [4, 0])
def test_transformer_mode_shapes(postfix):
    torch.manual_seed(0)
    gen = generator(
        'transformer',
        num_local_prompts=3,
        num_text_prefix=4,
        num_text_postfix=postfix)
    text, visual = gen()
    assert text.shape == (LAYERS, 4 + postfix, TEXT)
    assert visual.shape == (LAYERS, 3 * T, D)  # per-frame local prompts
    assert gen.embedding.weight.shape == (4 + postfix + 3 * T, LAYERS * D)
    # input independent and deterministic; every frame has its own prompts
    torch.testing.assert_close(gen()[1], visual)
    frames = visual.reshape(LAYERS, T, 3, D)
    assert (frames[:, 0] - frames[:, 1]).abs().amax() > 0
    # layers are independent sequences through the shared block
    with torch.no_grad():
        gen.embedding.weight[:, :D] += 1.  # layer 0's columns only
    moved = gen()[1]
    assert (moved[0] != visual[0]).any()
    torch.testing.assert_close(moved[1:], visual[1:])


@pytest.mark.parametrize('postfix', [4, 0])
def test_linear_mode_shapes(postfix):
    torch.manual_seed(0)
    gen = generator(
        'linear',
        num_local_prompts=4,
        num_text_prefix=4,
        num_text_postfix=postfix,
        init_bound=0.02)
    text, visual = gen()
    assert text.shape == (LAYERS, 4 + postfix, TEXT)
    assert visual.shape == (LAYERS, 4, D)  # shared by all frames
    assert gen.embedding.abs().max() <= 0.02
    assert (gen.postfix_proj is None) == (postfix == 0)
    # the text prompts are projections of the same local prompts
    torch.testing.assert_close(text[:, :4], gen.prefix_proj(visual))


@pytest.mark.parametrize('kwargs', [
    dict(num_local_prompts=4, num_text_prefix=2),
    dict(num_local_prompts=4, num_text_prefix=4, num_text_postfix=3),
])
def test_linear_mode_constraint_error(kwargs):
    with pytest.raises(
            ValueError, match='num_text_prefix must equal '
            'num_local_prompts'):
        generator('linear', **kwargs)
    generator('transformer', **kwargs)  # no such constraint there


def test_unknown_mode():
    with pytest.raises(ValueError, match="'transformer' or 'linear'"):
        generator('mlp')


def test_adapter():
    torch.manual_seed(0)
    adapter = Adapter(D, hidden_dims=5)
    x = torch.randn(2, 7, D)
    y = adapter(x)
    assert y.shape == x.shape
    assert adapter.down.out_features == 5
    # PyTorch default init, not zero: the model at step 0 is not plain CLIP
    assert y.abs().amax() > 0
