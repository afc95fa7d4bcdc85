# Copyright (c) mmstop contributors. All rights reserved.
"""Intra-frame spatial prompts: official pixel mode and paper token mode."""
import pytest
import torch
import torch.nn as nn

from mmstop.models.prompts import (PixelIntraFramePrompt,
                                   TokenIntraFramePrompt,
                                   build_intra_frame_prompt)
from mmstop.models.prompts.stop_intra import (cls_attention_map,
                                              normalize_region_scores,
                                              top_k_exact_mask,
                                              top_k_strict_mask)

# small sizes: 32 px frames, 8 px patches -> 4x4 grid, 16 patches
IMAGE, PATCH, GRID = 32, 8, 4
N, D = GRID * GRID, 16


def pixel_prompt(**kwargs):
    kwargs.setdefault('hidden_channels', (2, 2, 3))
    kwargs.setdefault('mlp_channels', 4)
    kwargs.setdefault('kernel_size', (3, 3, 3))
    return PixelIntraFramePrompt(IMAGE, PATCH, **kwargs)


def token_prompt(**kwargs):
    kwargs.setdefault('num_layers', 3)
    return TokenIntraFramePrompt(D, N, **kwargs)


def frame_block(seed=0):
    """A frozen pre-attention norm and attention of width D (2 heads)."""
    torch.manual_seed(seed)
    return nn.LayerNorm(D), nn.MultiheadAttention(D, 2, batch_first=True)


# ---------------------------------------------------------------------------
# official (pixel) mode
# ---------------------------------------------------------------------------
def test_pixel_prompt_shapes_and_exact_region_count():
    torch.manual_seed(0)
    module = pixel_prompt(num_regions=5).eval()
    x = torch.randn(2, 3, 3, IMAGE, IMAGE)
    out = module(x)
    assert out['frames'].shape == x.shape
    assert out['scores'].shape == out['mask'].shape == (2, 3, GRID, GRID)
    # random (non-degenerate) scores: strictly above the 6th largest = 5
    assert (out['mask'].flatten(2).sum(-1) == 5).all()
    # x + s*P + s_r*P*mask: compare with the same module without the region
    delta = out['frames'] - x
    module.region_scale = 0.
    plain = module(x)['frames'] - x
    pix = module.expand_mask(out['mask']).to(x.dtype)
    torch.testing.assert_close(delta, plain * (1 + pix))  # s_r = s = 0.05
    assert pix.mean() == 5 / N


def test_strict_top_k_keeps_fewer_on_ties_exact_top_k_does_not():
    scores = torch.zeros(1, GRID, GRID)
    assert top_k_strict_mask(scores, 3).sum() == 0  # official rule
    mask = top_k_exact_mask(scores.flatten(1), 3)
    assert mask.sum() == 3
    assert mask[0, :3].all()  # ties go to the lower index


@pytest.mark.parametrize('pooling', ['residue', 'patch'])
def test_pixel_mask_lattice_vs_block(pooling):
    module = pixel_prompt(mask_pooling=pooling)
    u, v = 1, 2
    cells = torch.zeros(1, 1, GRID, GRID, dtype=torch.bool)
    cells[0, 0, u, v] = True
    pix = module.expand_mask(cells)[0, 0, 0]
    assert pix.shape == (IMAGE, IMAGE)
    assert pix.sum() == PATCH * PATCH
    rows, cols = torch.nonzero(pix, as_tuple=True)
    if pooling == 'residue':
        # a lattice of period GRID over the whole frame
        assert (rows % GRID == u).all() and (cols % GRID == v).all()
        assert rows.max() - rows.min() == IMAGE - GRID
    else:
        # the PATCH x PATCH block of patch (u, v)
        assert (rows // PATCH == u).all() and (cols // PATCH == v).all()
    # pooling is the adjoint of the expansion: the indicator pools to 1 there
    pooled = module.pool_scores(pix[None, None].float())
    assert pooled[0, 0, u, v] == 1 and pooled.sum() == 1


def test_pixel_region_scorer_gets_no_gradient():
    """Official quirk: the mask is a hard comparison, Cal_Net never trains."""
    torch.manual_seed(0)
    module = pixel_prompt()
    out = module(torch.randn(1, 2, 3, IMAGE, IMAGE))
    out['frames'].sum().backward()
    assert module.region_scorer.weight.grad is None
    assert module.generator[0].weight.grad is not None
    assert module.mlp[-1].weight.grad is not None


def test_pixel_prompt_bad_input_names_expected_shape():
    with pytest.raises(ValueError, match=r'\[B, T, 3, 32, 32\]'):
        pixel_prompt()(torch.zeros(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match='mask_pooling'):
        pixel_prompt(mask_pooling='cells')


# ---------------------------------------------------------------------------
# paper (token) mode
# ---------------------------------------------------------------------------
def test_cls_attention_map_matches_multihead_attention():
    torch.manual_seed(1)
    norm, attn = frame_block()
    tokens = torch.randn(2, 3, 1 + N, D)
    x = norm(tokens).flatten(0, 1)
    _, weights = attn(
        x[:, :1], x, x, need_weights=True, average_attn_weights=True)
    expected = weights[:, 0, 1:].reshape(2, 3, N)
    torch.testing.assert_close(
        cls_attention_map(tokens, norm, attn), expected, rtol=1e-5, atol=1e-6)


def test_normalize_region_scores():
    s = torch.tensor([[1., 3., 2.], [5., 5., 5.]])
    torch.testing.assert_close(
        normalize_region_scores(s, 'minmax'),
        torch.tensor([[0., 1., .5], [0., 0., 0.]]))
    torch.testing.assert_close(
        normalize_region_scores(s, 'sum').sum(-1), torch.ones(2))
    assert normalize_region_scores(s, 'none') is s
    with pytest.raises(ValueError, match='score_norm'):
        normalize_region_scores(s, 'softmax')


def test_token_prompt_exactly_ns_regions_and_prompts_only_there():
    torch.manual_seed(0)
    norm, attn = frame_block()
    module = token_prompt(num_regions=5).eval()
    tokens = torch.randn(2, 4, 1 + N, D)
    out = module(tokens, 1, norm=norm, attn=attn)
    assert out['tokens'].shape == tokens.shape
    for key in ('mask', 'scores', 'attn_map', 'dynamics'):
        assert out[key].shape == (2, 4, N), key
    assert (out['mask'].sum(-1) == 5).all()
    changed = (out['tokens'] != tokens).any(-1)
    assert not changed[:, :, 0].any()  # CLS untouched
    assert torch.equal(changed[:, :, 1:], out['mask'])
    torch.testing.assert_close(out['tokens'][:, :, 1:] - tokens[:, :, 1:],
                               out['prompts'] * out['mask'][..., None])


def test_token_prompt_exact_count_on_ties():
    """All scores equal (constant N^s output, alpha=0): still exactly N_s."""
    module = token_prompt(num_regions=6, alpha=0.).eval()
    with torch.no_grad():
        module.scorers[0].weight.zero_()
    out = module(torch.randn(1, 2, 1 + N, D), 0)
    assert (out['scores'] == out['scores'][0, 0, 0]).all()
    assert (out['mask'].sum(-1) == 6).all()
    assert out['mask'][..., :6].all()  # deterministic: lowest indices


@pytest.mark.parametrize('alpha,key', [(1., 'attn_map'), (0., 'dynamics')])
def test_token_prompt_alpha_selects_score_component(alpha, key):
    torch.manual_seed(2)
    norm, attn = frame_block()
    module = token_prompt(num_regions=4, alpha=alpha).eval()
    out = module(torch.randn(1, 3, 1 + N, D), 0, norm=norm, attn=attn)
    expected = top_k_exact_mask(out[key], 4)
    assert torch.equal(out['mask'], expected)


def test_token_prompt_temporal_window_is_three_frames():
    """P^s(h_{i-1}, h_i, h_{i+1}): frame i only moves prompts of i-1..i+1."""
    torch.manual_seed(3)
    module = token_prompt().eval()
    prompter = module.prompters[0]
    patches = torch.randn(1, 6, N, D)
    moved = patches.clone()
    moved[:, 3] += 1.
    diff = (prompter(moved) - prompter(patches)).abs().flatten(2).amax(-1)
    # outside the window only round-off (conv3d_same may use FFTs)
    assert diff[0, [0, 1, 5]].max() < 1e-4 * diff[0, 2:5].min()


@pytest.mark.parametrize('region_grad', ['none', 'straight_through'])
def test_token_prompt_region_gradient(region_grad):
    torch.manual_seed(4)
    norm, attn = frame_block()
    attn.requires_grad_(False)
    norm.requires_grad_(False)
    module = token_prompt(region_grad=region_grad).eval()
    tokens = torch.randn(1, 3, 1 + N, D, requires_grad=True)
    out = module(tokens, 0, norm=norm, attn=attn)
    out['tokens'].pow(2).sum().backward()
    grad = module.scorers[0].weight.grad
    if region_grad == 'none':
        assert grad is None  # hard top-k, as written in the paper
    else:
        assert grad is not None and grad.abs().sum() > 0
    assert module.prompters[0].mlp[-1].weight.grad.abs().sum() > 0
    # the straight-through estimator leaves the forward values unchanged
    other = token_prompt(
        region_grad='none' if region_grad != 'none' else 'straight_through')
    other.load_state_dict(module.state_dict())
    other.eval()
    assert torch.equal(
        other(tokens, 0, norm=norm, attn=attn)['tokens'], out['tokens'])


def test_token_prompt_layers_and_sharing():
    shared = token_prompt(num_layers=4, layers=[0, 2])
    assert len(shared.prompters) == len(shared.scorers) == 1
    assert shared.applies_to(2) and not shared.applies_to(1)
    per_layer = token_prompt(num_layers=4, share_across_layers=False)
    assert len(per_layer.prompters) == len(per_layer.scorers) == 4
    assert per_layer.prompters[0] is not per_layer.prompters[3]
    n_shared = sum(p.numel() for p in token_prompt(num_layers=4).parameters())
    assert sum(p.numel() for p in per_layer.parameters()) == 4 * n_shared
    with pytest.raises(ValueError, match='layers'):
        token_prompt(num_layers=4, layers=[1, 4])
    with pytest.raises(ValueError, match='not in the prompted layers'):
        shared(torch.zeros(1, 2, 1 + N, D), 1)


def test_token_prompt_needs_attention_for_alpha():
    module = token_prompt()
    with pytest.raises(ValueError, match='norm and attention'):
        module(torch.zeros(1, 2, 1 + N, D), 0)
    # alpha = 0 uses the temporal dynamics alone
    out = token_prompt(alpha=0.)(torch.randn(1, 2, 1 + N, D), 0)
    assert (out['attn_map'] == 0).all()


def test_token_prompt_bad_input():
    norm, attn = frame_block()
    with pytest.raises(ValueError, match=rf'\[B, T, {N + 1}, {D}\]'):
        token_prompt()(torch.zeros(1, 2, N, D), 0, norm=norm, attn=attn)
    for kwargs, name in ((dict(num_regions=N + 1), 'num_regions'),
                         (dict(alpha=1.5), 'alpha'), (dict(score_norm='z'),
                                                      'score_norm'),
                         (dict(region_grad='soft'), 'region_grad'),
                         (dict(kernel_size=(2, 3, 3)), 'odd')):
        with pytest.raises(ValueError, match=name):
            token_prompt(**kwargs)


def test_build_intra_frame_prompt_modes_and_unknown_keys():
    sizes = dict(
        image_size=IMAGE,
        patch_size=PATCH,
        embed_dims=D,
        num_patches=N,
        num_layers=2)
    assert build_intra_frame_prompt(None, **sizes) is None
    assert isinstance(
        build_intra_frame_prompt(dict(), **sizes), PixelIntraFramePrompt)
    paper = build_intra_frame_prompt(
        dict(mode='paper', num_regions=3), **sizes)
    assert isinstance(paper, TokenIntraFramePrompt)
    assert paper.num_regions == 3 and paper.layers == (0, 1)
    with pytest.raises(TypeError, match='mask_pooling'):
        build_intra_frame_prompt(
            dict(mode='paper', mask_pooling='patch'), **sizes)
    with pytest.raises(ValueError, match="'pixels'"):
        build_intra_frame_prompt(dict(mode='pixels'), **sizes)
