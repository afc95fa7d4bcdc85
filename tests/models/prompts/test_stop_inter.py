# Copyright (c) mmstop contributors. All rights reserved.
"""Inter-frame temporal prompts: official (attentive) and paper (dynamic)."""
import math

import pytest
import torch

from mmstop.models.prompts import (AttentiveInterFramePrompt,
                                   DynamicInterFramePrompt,
                                   build_inter_frame_prompt)
from mmstop.models.prompts.stop_inter import normalize_frame_scores

N, D = 16, 16  # 4x4 patches of width 16


def official(**kwargs):
    kwargs.setdefault('num_heads', 2)
    kwargs.setdefault('kernel_size', (3, 3, 5))
    kwargs.setdefault('scorer_kernel_size', (3, 3, 3))
    return AttentiveInterFramePrompt(D, N, **kwargs).eval()


def paper(**kwargs):
    kwargs.setdefault('num_heads', 2)
    return DynamicInterFramePrompt(D, N, **kwargs).eval()


def identity_scorer(module):
    """Make N^t the identity, so h~ = dh and W has a closed form."""
    with torch.no_grad():
        w = module.variation_scorer.weight
        w.zero_()
        w[0, 0, w.shape[2] // 2, w.shape[3] // 2, w.shape[4] // 2] = 1.
        module.variation_scorer.bias.zero_()


# ---------------------------------------------------------------------------
# official mode
# ---------------------------------------------------------------------------
def test_official_shapes():
    torch.manual_seed(0)
    out = official(num_prompts=3)(torch.randn(2, 4, 1 + N, D),
                                  torch.rand(2, 4, 4, 4) > .5)
    assert out['prompts'].shape == (2, 4, 3, D)
    assert out['attn'].shape == (2, 4, N, D)
    assert out['w_raw'].shape == out['w'].shape == (2, 4)


def test_normalize_frame_scores_single_frame():
    """B*T = 1: 'batch' (official) divides 0 by 0, 'video' maps to 0."""
    one = torch.tensor([[0.3]])
    assert torch.isnan(normalize_frame_scores(one, 'batch')).all()
    assert normalize_frame_scores(one, 'video').eq(0).all()
    with pytest.raises(ValueError, match='normalize'):
        normalize_frame_scores(one, 'frame')


@pytest.mark.parametrize('normalize', ['batch', 'video'])
def test_official_single_frame_nan(normalize):
    torch.manual_seed(0)
    out = official(normalize=normalize)(torch.randn(1, 1, 1 + N, D))
    assert torch.isnan(out['prompts']).any() == (normalize == 'batch')


@pytest.mark.parametrize('normalize', ['batch', 'video'])
def test_official_batch_coupling(normalize):
    """Video 0's prompts depend on video 1 only with 'batch' normalisation."""
    torch.manual_seed(0)
    module = official(normalize=normalize)
    a = torch.randn(2, 3, 1 + N, D)
    b = a.clone()
    b[1] = 3 * torch.randn(3, 1 + N, D)
    pa, pb = module(a)['prompts'][0], module(b)['prompts'][0]
    if normalize == 'video':
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)
    else:
        assert (pa - pb).abs().max() > 1e-4


def test_official_region_mask_weights_scores():
    torch.manual_seed(0)
    module = official()
    tokens = torch.randn(1, 3, 1 + N, D)
    none = module(tokens)['w_raw']
    all_on = module(tokens, torch.ones(1, 3, 4, 4, dtype=torch.bool))['w_raw']
    torch.testing.assert_close(all_on, 2 * none)  # V * (1 + R), R = 1
    with pytest.raises(ValueError, match='9 cells'):
        module(tokens, torch.ones(1, 3, 3, 3, dtype=torch.bool))


# ---------------------------------------------------------------------------
# paper mode
# ---------------------------------------------------------------------------
def step_video(deltas, B=1):
    """Tokens whose patch entries all jump by ``deltas[i]`` at frame i+1."""
    levels = torch.cat([torch.zeros(1), torch.tensor(deltas).cumsum(0)])
    tokens = torch.zeros(B, len(levels), 1 + N, D)
    tokens[:, :, 1:] = levels[None, :, None, None]
    return tokens


def test_paper_counts_are_ceil_eta_w_clamped():
    eta = 12.
    module = paper(eta=eta, min_prompts=1, max_prompts=6, beta=4.)
    identity_scorer(module)
    deltas = [0., 0.2, 0.5, 3.]  # W = delta^2 (every entry of dh = delta)
    out = module(step_video(deltas))
    w = torch.tensor(deltas)**2
    torch.testing.assert_close(out['w_raw'][0, 1:], w)
    expected = torch.ceil(eta * w).clamp(1, 6).long()  # 0, 1, 3, 6 -> 1,1,3,6
    assert expected.tolist() == [1, 1, 3, 6]
    assert out['counts'][0].tolist() == [0] + expected.tolist()
    assert out['counts'].dtype == torch.long


def test_paper_beta_weights_region_tokens():
    module = paper(beta=4.)
    identity_scorer(module)
    tokens = step_video([0.5])
    region = torch.zeros(1, 2, N, dtype=torch.bool)
    region[0, 1, :N // 4] = True  # a quarter of frame 1's patches
    w0 = module(tokens)['w_raw'][0, 1]
    w1 = module(tokens, region)['w_raw'][0, 1]
    torch.testing.assert_close(w1, w0 * (1 + 4. / 4))
    # the region of frame 0 does not weight the gap 0 -> 1
    region0 = torch.zeros(1, 2, N, dtype=torch.bool)
    region0[0, 0] = True
    torch.testing.assert_close(module(tokens, region0)['w_raw'][0, 1], w0)


def test_paper_padding_masks_and_padded_values():
    torch.manual_seed(0)
    module = paper(min_prompts=2, max_prompts=5)
    out = module(torch.randn(3, 4, 1 + N, D))
    counts, pad = out['counts'], out['padding_mask']
    assert out['prompts'].shape == (3, 4, 5, D) and pad.shape == (3, 4, 5)
    assert (counts[:, 0] == 0).all() and pad[:, 0].all()  # first_frame='none'
    assert ((counts[:, 1:] >= 2) & (counts[:, 1:] <= 5)).all()
    assert torch.equal(pad.sum(-1), 5 - counts)
    assert torch.equal(pad, torch.arange(5) >= counts[..., None])
    assert (out['prompts'][pad] == 0).all()
    assert (out['prompts'][~pad].abs().sum(-1) > 0).all()


def test_paper_first_frame_zero_difference():
    torch.manual_seed(0)
    module = paper(first_frame='zero', min_prompts=1)
    out = module(torch.randn(2, 3, 1 + N, D))
    assert (out['counts'] >= 1).all()  # frame 0 has its own group
    # a single frame still works (one zero difference) ...
    assert module(torch.randn(1, 1, 1 + N, D))['counts'].shape == (1, 1)
    # ... and with 'none' it has no group at all
    single = paper()(torch.randn(1, 1, 1 + N, D))
    assert single['counts'].tolist() == [[0]] and single['padding_mask'].all()


def test_paper_one_head_per_count():
    module = paper(min_prompts=0, max_prompts=4)
    assert sorted(module.heads) == ['1', '2', '3', '4']
    for n, head in module.heads.items():
        assert head.in_features == N and head.out_features == int(n)
    assert len(paper(eta=5.5).heads) == math.ceil(5.5)
    # each frame's tokens come from its own count's head
    torch.manual_seed(0)
    module = paper(max_prompts=4, dropout=0.)
    identity_scorer(module)
    tokens = step_video([0.1, 0.3, 3.])  # W = 0.01, 0.09, 9
    out = module(tokens)
    assert out['counts'][0].tolist() == [0, 1, 2, 4]
    for n in out['counts'][0, 1:].unique().tolist():
        with torch.no_grad():
            module.heads[str(n)].weight.mul_(2.)
            module.heads[str(n)].bias.mul_(2.)
        moved = module(tokens)['prompts']
        changed = (moved != out['prompts']).flatten(2).any(-1)[0]
        assert torch.equal(changed, out['counts'][0] == n)
        out = module(tokens)


def test_paper_variation_norm_video():
    torch.manual_seed(0)
    out = paper(variation_norm='video')(torch.randn(2, 5, 1 + N, D))
    w = out['w'][:, 1:]
    assert torch.allclose(w.amin(1), torch.zeros(2))
    assert torch.allclose(w.amax(1), torch.ones(2))
    assert (out['counts'][:, 1:] == torch.ceil(12 * w).clamp(1, 12)).all()


@pytest.mark.parametrize('variation_grad', ['none', 'straight_through'])
def test_paper_variation_gradient(variation_grad):
    torch.manual_seed(0)
    module = paper(variation_grad=variation_grad)
    tokens = torch.randn(1, 3, 1 + N, D)
    out = module(tokens)
    out['prompts'].pow(2).sum().backward()
    grad = module.variation_scorer.weight.grad
    if variation_grad == 'none':
        assert grad is None  # integer counts alone carry no gradient
    else:
        assert grad is not None and grad.abs().sum() > 0
    assert module.conv[0].weight.grad.abs().sum() > 0
    other = paper(variation_grad='none')
    other.load_state_dict(module.state_dict())
    assert torch.equal(other.eval()(tokens)['prompts'], out['prompts'])


def test_paper_options_are_checked():
    for kwargs, name in ((dict(min_prompts=3, max_prompts=2), 'min_prompts'),
                         (dict(first_frame='last'), 'first_frame'),
                         (dict(variation_norm='batch'), 'variation_norm'),
                         (dict(variation_grad='x'), 'variation_grad')):
        with pytest.raises(ValueError, match=name):
            paper(**kwargs)
    with pytest.raises(ValueError, match=rf'\[B, T, {N + 1}, {D}\]'):
        paper()(torch.zeros(1, 2, N, D))


def test_build_inter_frame_prompt():
    sizes = dict(
        embed_dims=D, num_patches=N, num_prompts=3, num_heads=2, num_frames=4)
    assert build_inter_frame_prompt(None, **sizes) is None
    assert build_inter_frame_prompt(dict(), **sizes).num_prompts == 3
    module = build_inter_frame_prompt(dict(mode='paper', eta=4), **sizes)
    assert isinstance(module, DynamicInterFramePrompt)
    assert module.max_prompts == 4
    with pytest.raises(TypeError, match='normalize'):
        build_inter_frame_prompt(
            dict(mode='paper', normalize='video'), **sizes)
