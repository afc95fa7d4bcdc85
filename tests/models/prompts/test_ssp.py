# Copyright (c) mmstop contributors. All rights reserved.
"""SSP modules: Intra-Frame Gathering, Inter-Frame Spreading, their update.

The parity-marked tests check the pieces against the golden data of the
official code (``docs/parity.md#ssp-golden-data``), with only the SSP
tensors of the official weights loaded.
"""
import json
import os.path as osp

import pytest
import torch
from helpers import assert_rel_close

from mmstop.models.prompts import (FrameImportance, IntraFrameGathering,
                                   PromptAttention, StateSpacePrompting)

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread', 'torch_seed')


def make_ssp(embed_dims=16, num_layers=4, grid=(2, 3), **kw):
    kw.setdefault('hidden_dims', 8)
    kw.setdefault('attn_dims', 8)
    kw.setdefault('num_heads', 2)
    return StateSpacePrompting(embed_dims, num_layers, grid, **kw)


def randomize(module, seed=0):
    """Non-zero values for every SSP tensor (most start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


# --------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------
@pytest.mark.parametrize('arch,embed_dims,depth,expected', [
    ('tiny', 192, 24, 1_384_154),
    ('small', 384, 24, 1_901_210),
    ('middle', 576, 32, 2_418_274),
])
def test_parameter_count(arch, embed_dims, depth, expected):
    ssp = StateSpacePrompting(embed_dims, depth, (14, 14))  # defaults = paper
    assert sum(p.numel() for p in ssp.parameters()) == expected


@pytest.mark.parametrize('arch', ['tiny', 'small', 'middle'])
def test_names_and_shapes_match_official(ssp_parity_dir, arch):
    with open(osp.join(ssp_parity_dir, f'keys_{arch}.json')) as f:
        table = json.load(f)
    official = {
        e['key']: tuple(e['shape'])
        for e in table['keys'] if e['group'] == 'ssp'
    }
    cfg = table['config']
    ssp = StateSpacePrompting(
        cfg['embed_dim'],
        cfg['depth'], (cfg['img_size'] // 16, ) * 2,
        num_prompts=cfg['ours_num'],
        hidden_dims=cfg['ours_inner_dim'],
        attn_dims=cfg['ours_attn_dim'])
    ours = {k: tuple(v.shape) for k, v in ssp.state_dict().items()}
    assert ours == official
    assert list(ours) == list(official)  # official order too


# --------------------------------------------------------------------------
# init (docs/ssp.md#ssp-initialisation-and-step-0)
# --------------------------------------------------------------------------
def test_init_values_and_zero_outputs():
    ssp = make_ssp()
    ifg = ssp.inner_prompt
    for t in (ifg.conv.weight, ifg.conv.bias, ifg.fc1.bias, ifg.fc2.bias,
              ifg.inter.convs.weight, ifg.inter.convs.bias,
              ifg.inter.heads.bias, *ssp.dynamic_scales):
        assert torch.count_nonzero(t) == 0
    assert ifg.fc1.weight.abs().sum() > 0 and ifg.inter.heads.weight.abs().sum(
    ) > 0
    for pa in ssp.prompt_attentions:
        assert torch.equal(pa.scale, torch.ones(1))
    tokens = torch.randn(2, 3, 6 + 3, 16)
    fmap, frame = ifg(tokens[:, :, :6])
    assert torch.count_nonzero(fmap) == 0 and torch.count_nonzero(frame) == 0
    out = ssp(tokens, layer_idx=2)
    # patches unchanged, every prompt slot exactly zero
    assert torch.equal(out[:, :, :6], tokens[:, :, :6])
    assert torch.count_nonzero(out[:, :, 6:]) == 0


# --------------------------------------------------------------------------
# update semantics (docs/ssp.md#per-layer-update)
# --------------------------------------------------------------------------
def test_layer0_keeps_slots_and_updates_patches_from_patches():
    """Layer 0 passes the prompt slots through and changes the patch tokens
    by a function of the patches alone (the official update itself:
    ``test_ifg_matches_golden``)."""
    ssp = randomize(make_ssp())
    tokens = torch.randn(2, 3, 9, 16)
    other = tokens.clone()
    other[:, :, 6:] = torch.randn(2, 3, 3, 16) * 100
    out, out_other = ssp(tokens, layer_idx=0), ssp(other, layer_idx=0)
    assert torch.equal(out[:, :, 6:], tokens[:, :, 6:])
    assert torch.equal(out_other[:, :, :6], out[:, :, :6])
    assert (out[:, :, :6] - tokens[:, :, :6]).abs().amax(-1).min() > 0


def test_slots_are_overwritten_from_layer1():
    """From layer 1 the incoming slot values do not matter (the official
    slot formula itself: ``test_ifs_matches_golden``)."""
    ssp = randomize(make_ssp())
    tokens = torch.randn(2, 3, 9, 16)
    other = tokens.clone()
    other[:, :, 6:] = torch.randn(2, 3, 3, 16) * 100
    a, b = ssp(tokens, layer_idx=1), ssp(other, layer_idx=1)
    assert torch.equal(a, b)
    assert not torch.allclose(a[:, :, 6:], tokens[:, :, 6:])


def test_dynamic_scale_per_layer():
    ssp = randomize(make_ssp(num_layers=4))
    tokens = torch.randn(2, 3, 9, 16)
    before = [ssp(tokens, layer_idx=i)[:, :, 6:] for i in (1, 2, 3)]
    with torch.no_grad():
        ssp.dynamic_scales[1].add_(1.0)  # used by layer 2 only
    after = [ssp(tokens, layer_idx=i)[:, :, 6:] for i in (1, 2, 3)]
    assert torch.equal(before[0], after[0])
    assert not torch.allclose(before[1], after[1])
    assert torch.equal(before[2], after[2])


def test_gradients_and_detach_points():
    ssp = randomize(make_ssp())
    tokens = torch.randn(2, 3, 9, 16, requires_grad=True)
    out = ssp(tokens, layer_idx=1)
    # the frame vector sees G detached: it trains only inner_prompt.inter
    _, frame = ssp.inner_prompt(tokens[:, :, :6])
    grads = torch.autograd.grad(
        frame.sum(), list(ssp.inner_prompt.parameters()), allow_unused=True)
    names = [n for n, _ in ssp.inner_prompt.named_parameters()]
    for n, g in zip(names, grads):
        if n.startswith('inter.'):
            assert g is not None and g.abs().sum() > 0, n
        else:
            assert g is None or g.abs().sum() == 0, n
    # the last patch token carries gradient into the prompt slots
    g_tok, = torch.autograd.grad(out[:, :, 6:].sum(), tokens)
    assert g_tok[:, :, 5].abs().sum() > 0
    assert g_tok[:, :, 6:].abs().sum() == 0  # overwritten slots
    # the frame weights carry no gradient
    fmap = torch.randn(2, 3, 6, 16, requires_grad=True)
    assert not ssp.frame_importance(fmap).requires_grad


# --------------------------------------------------------------------------
# frame importance (entropy weights)
# --------------------------------------------------------------------------
def _importance_by_hand(fmap, per_video):
    out = torch.empty(fmap.shape[:2], dtype=torch.float64)
    ents = []
    for b in range(fmap.shape[0]):
        rows = []
        for t in range(fmap.shape[1]):
            row = []
            for n in range(fmap.shape[2]):
                p = torch.softmax(fmap[b, t, n].double(), 0)
                row.append(float(-(p * torch.log(p + 1e-10)).sum()))
            rows.append(row)
        ents.append(rows)
    ents = torch.tensor(ents, dtype=torch.float64)
    for b in range(fmap.shape[0]):
        m = ents[b].max() if per_video else ents.max()
        out[b] = torch.softmax((1 - ents[b] / m).mean(-1), 0)
    return out


@pytest.mark.parametrize('mode', ['batch', 'video'])
def test_frame_importance_formula(mode):
    fmap = torch.randn(
        3, 4, 5, 7, generator=torch.Generator().manual_seed(0)) * 3
    w = FrameImportance(mode)(fmap)
    torch.testing.assert_close(
        w.double(),
        _importance_by_hand(fmap, mode == 'video'),
        rtol=1e-5,
        atol=1e-6)
    torch.testing.assert_close(w.sum(1), torch.ones(3))


def test_frame_importance_batch_coupling():
    fmap = torch.randn(2, 4, 5, 7, generator=torch.Generator().manual_seed(0))
    other = fmap.clone()
    other[1] *= 0.1  # flatter: video 1 now holds the batch's entropy max
    batch, video = FrameImportance('batch'), FrameImportance('video')
    assert not torch.allclose(batch(fmap)[0], batch(other)[0])
    assert torch.equal(video(fmap)[0], video(other)[0])
    assert torch.allclose(video(fmap[:1]), batch(fmap[:1]))


def test_bad_options():
    with pytest.raises(ValueError, match='entropy_max'):
        FrameImportance('frame')
    with pytest.raises(ValueError, match='odd'):
        IntraFrameGathering(16, 8, kernel_size=(1, 2, 2), grid_size=(2, 2))
    ifg = IntraFrameGathering(16, 8, grid_size=(2, 3))
    with pytest.raises(ValueError, match='patch tokens'):
        ifg(torch.randn(1, 2, 4, 16))


def test_kernel_size_option_uses_neighbours():
    ifg1 = randomize(IntraFrameGathering(8, 4, (1, 1, 1), (3, 3)))
    ifg3 = randomize(IntraFrameGathering(8, 4, (1, 3, 3), (3, 3)))
    x = torch.randn(1, 2, 9, 8)
    y = x.clone()
    y[:, :, 0] += 1  # perturb patch 0 only
    d1 = (ifg1(x)[0] - ifg1(y)[0]).abs().amax(-1)
    d3 = (ifg3(x)[0] - ifg3(y)[0]).abs().amax(-1)
    assert (d1[:, :, 1:] == 0).all()  # 1x1x1: token-local
    assert (d3[:, :, 1] > 0).all() and (d3[:, :, 4] > 0).all()  # neighbours
    assert (d3[:, :, 8] == 0).all()  # not a neighbour of patch 0


def test_shortcuts_equal_official_conv3d_path():
    """(1,1,1) runs as a per-channel affine map and FrameSummary as an
    einsum; the official Conv3d layout gives the same numbers."""
    ifg = randomize(IntraFrameGathering(8, 4, (1, 1, 1), (2, 3)))
    b, t, h, w, ca = 2, 3, 2, 3, 4
    x = torch.randn(b, t, h * w, 8)
    fmap, frame = ifg(x)
    g = ifg.conv(ifg.fc1(x).view(b, t, h, w, ca).permute(0, 4, 1, 2, 3))
    fmap_ref = ifg.fc2(g.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, ca))
    frame_ref = ifg.inter.heads(
        ifg.inter.convs(g).permute(0, 2, 3, 4, 1).reshape(b, t, ca))
    torch.testing.assert_close(fmap, fmap_ref)
    torch.testing.assert_close(frame, frame_ref)


def test_prompt_attention_mixes_frames_of_one_video_only():
    pa = randomize(PromptAttention(16, 8, 2))
    q = torch.randn(2, 4, 16)
    out = pa(q)
    q2 = q.clone()
    q2[1, 2] += 1
    out2 = pa(q2)
    assert torch.equal(out[0], out2[0])  # other video untouched
    assert ((out[1] - out2[1]).abs().amax(-1) > 0).all()  # all its frames


# --------------------------------------------------------------------------
# pieces against the official golden data (docs/parity.md#ssp-golden-data)
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def golden_a(ssp_parity_dir, ssp_weights):
    g = torch.load(
        osp.join(ssp_parity_dir, 'golden_tiny_img64_T4_B2.pt'),
        weights_only=True)
    c = g['config']
    keys = ssp_weights.official_keys(c['arch'], c['num_frames'],
                                     c['num_classes'], c['ours_num'],
                                     c['img_size'])
    ssp_sd = {
        k: ssp_weights.make_tensor(k, s)
        for k, s, _ in keys
        if k.startswith(('inner_prompt.', 'dynamic_scales.',
                         'prompt_attentions.'))
    }
    ssp = StateSpacePrompting(
        c['embed_dim'],
        c['depth'], (c['img_size'] // 16, ) * 2,
        num_prompts=c['ours_num'],
        hidden_dims=c['ours_inner_dim'],
        attn_dims=c['ours_attn_dim'])
    ssp.load_state_dict(ssp_sd, strict=True)
    return g, ssp.eval()


def _tokens(g, x):
    c = g['config']
    n = (c['img_size'] // 16)**2
    return x[:, 1:].reshape(x.shape[0], c['num_frames'], n + c['ours_num'],
                            -1), n


@pytest.mark.parity
def test_ifg_matches_golden(golden_a):
    g, ssp = golden_a
    with torch.no_grad():
        tok, n = _tokens(g, g['embed'])
        fmap, frame = ssp.inner_prompt(tok[:, :, :n])
        assert_rel_close(fmap, g['l0_feature_maps'], 'l0_feature_maps')
        assert_rel_close(frame, g['l0_inter'], 'l0_inter')
        tok, n = _tokens(g, g['l0_hidden'])
        fmap, frame = ssp.inner_prompt(tok[:, :, :n])
        assert_rel_close(fmap, g['l1_feature_maps'], 'l1_feature_maps')
        assert_rel_close(frame, g['inter_all'][1], 'inter_all[1]')
        # layer-0 update: embed + feature maps, slots still zero
        out = ssp(_tokens(g, g['embed'])[0], 0)
        assert_rel_close(out, _tokens(g, g['l0_input'])[0], 'l0_input')


@pytest.mark.parity
def test_ifs_matches_golden(golden_a):
    g, ssp = golden_a
    with torch.no_grad():
        tok, n = _tokens(g, g['l0_hidden'])
        w = ssp.frame_importance(g['l1_feature_maps'])
        assert_rel_close(w, g['entropy_weights'][0], 'entropy_weights[0]')
        q = tok[:, :, n - 1] * (1 + ssp.dynamic_scales[0] * w[..., None])
        assert_rel_close(q, g['l1_query'], 'l1_query')
        for i, pa in enumerate(ssp.prompt_attentions):
            assert_rel_close(
                pa(g['l1_query']) * g['inter_all'][1],
                g['prompts_all'][0][:, :, i], f'slot {i}')
        # the whole layer-1 update
        out = ssp(tok, 1)
        assert_rel_close(out, _tokens(g, g['l1_input'])[0], 'l1_input')
