# Copyright (c) mmstop contributors. All rights reserved.
"""VideoMamba backbone: sizes, token layout, blocks, freezing, precision."""
import json
import math
import os.path as osp

import pytest
import torch

from mmstop.models.backbones import BiMambaMixer, MambaBlock, VideoMamba
from mmstop.registry import MODELS

SMALL = dict(embed_dims=32, depth=3)

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread', 'torch_seed')


def small_model(**kw):
    cfg = dict(arch=SMALL, img_size=32, patch_size=16, num_frames=3)
    cfg.update(kw)
    return VideoMamba(**cfg)


def randomize_ssp(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.ssp.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


# --------------------------------------------------------------------------
# architecture table and sizes
# --------------------------------------------------------------------------
@pytest.mark.parametrize('arch,dims,depth', [('tiny', 192, 24),
                                             ('small', 384, 24),
                                             ('middle', 576, 32),
                                             ('m', 576, 32)])
def test_arch_table(arch, dims, depth):
    with torch.device('meta'):
        model = VideoMamba(arch=arch)
    assert (model.embed_dims, model.depth, len(model.layers)) == (dims, depth,
                                                                  depth)
    mixer = model.layers[0].mixer
    assert (mixer.d_inner, mixer.dt_rank, mixer.d_state,
            mixer.d_conv) == (2 * dims, math.ceil(dims / 16), 16, 4)


def test_bad_arch():
    with pytest.raises(KeyError, match='not one of'):
        VideoMamba(arch='huge')
    with pytest.raises(KeyError, match='embed_dims'):
        VideoMamba(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match='divisible'):
        VideoMamba(arch=SMALL, img_size=40, patch_size=16)


@pytest.mark.parametrize('arch,expected', [('tiny', 6_956_352),
                                           ('small', 25_414_272),
                                           ('middle', 73_644_480)])
def test_parameter_count(arch, expected):
    """docs/ssp.md#backbone-sizes: parameters without head, SSP and norm_f
    (8 frames)."""
    with torch.device('meta'):
        model = VideoMamba(arch=arch, num_frames=8)
    n = sum(p.numel() for k, p in model.named_parameters()
            if not k.startswith('norm_f'))
    assert n == expected


@pytest.mark.parametrize('arch', ['tiny', 'small', 'middle'])
def test_keys_match_official_table(ssp_parity_dir, arch):
    """Backbone + SSP names, shapes and order == the official state dict
    (the head lives in the recognizer)."""
    with open(osp.join(ssp_parity_dir, f'keys_{arch}.json')) as f:
        table = json.load(f)
    c = table['config']
    with torch.device('meta'):
        model = VideoMamba(
            arch=arch,
            img_size=c['img_size'],
            num_frames=c['num_frames'],
            ssp=dict(
                num_prompts=c['ours_num'],
                hidden_dims=c['ours_inner_dim'],
                attn_dims=c['ours_attn_dim']))
    ours = [(k[4:] if k.startswith('ssp.') else k, tuple(v.shape))
            for k, v in model.state_dict().items()]
    official = [(e['key'], tuple(e['shape'])) for e in table['keys']
                if e['group'] != 'head']
    assert ours == official
    trainable = {
        k[4:] if k.startswith('ssp.') else k
        for k, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {
        e['key']
        for e in table['keys'] if e['trainable'] and e['group'] != 'head'
    }


@pytest.mark.parametrize('arch', ['tiny', 'small', 'middle'])
@pytest.mark.parametrize('ssp', [None, dict()])
def test_output_shape_every_arch(arch, ssp):
    model = MODELS.build(
        dict(type='VideoMamba', arch=arch, img_size=32, num_frames=2,
             ssp=ssp)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 2, 32, 32))
    assert out.shape == (1, model.embed_dims)
    assert torch.isfinite(out).all()


def test_token_layout():
    """CLS at 0 (cls + pos[0], no temporal), frame-major row-major patches
    with spatial + temporal embedding, P zero slots after each frame."""
    model = small_model(
        img_size=(32, 48),
        ssp=dict(num_prompts=2, hidden_dims=8, attn_dims=8, num_heads=2))
    with torch.no_grad():
        for p in (model.cls_token, model.pos_embed,
                  model.temporal_pos_embedding):
            p.normal_()
    x = torch.randn(2, 3, 3, 32, 48)
    seq = model.forward_embed(x)
    conv = model.patch_embed.proj(x)  # [B, C, T, 2, 3]
    n, p = 6, 2
    assert seq.shape == (2, 1 + 3 * (n + p), 32)
    torch.testing.assert_close(seq[:, 0],
                               (model.cls_token[0] +
                                model.pos_embed[:, 0]).expand(2, -1))
    for t in range(3):
        base = 1 + t * (n + p)
        for row in range(2):
            for col in range(3):
                i = row * 3 + col
                torch.testing.assert_close(
                    seq[:, base + i],
                    conv[:, :, t, row, col] + model.pos_embed[0, 1 + i] +
                    model.temporal_pos_embedding[0, t])
        assert torch.count_nonzero(seq[:, base + n:base + n + p]) == 0


def test_input_shape_errors():
    model = small_model()
    with pytest.raises(ValueError, match='num_frames, img_size'):
        model(torch.randn(1, 3, 4, 32, 32))
    with pytest.raises(ValueError, match='num_frames, img_size'):
        model(torch.randn(1, 3, 3, 48, 32))
    with pytest.raises(ValueError, match=r'\[B, C, T, H, W\]'):
        model(torch.randn(3, 3, 32, 32))


# --------------------------------------------------------------------------
# blocks: drop path, init, mixer structure
# --------------------------------------------------------------------------
def test_drop_path_schedule():
    model = small_model(arch=dict(embed_dims=16, depth=5), drop_path_rate=0.4)
    dpr = torch.linspace(0, 0.4, 5).tolist()
    rates = [
        getattr(layer.drop_path, 'drop_prob', 0.0) for layer in model.layers
    ]
    assert rates == [0.0] + dpr[:-1]  # block i uses ([0] + dpr)[i]
    assert model.drop_path.drop_prob == pytest.approx(0.4)
    # active in training even when the backbone is frozen (official)
    model = small_model(
        drop_path_rate=0.9, ssp=dict(hidden_dims=8, attn_dims=8, num_heads=2))
    model.train()
    x = torch.randn(4, 3, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)


def test_random_init():
    """docs/ssp.md#official-initialisation."""
    torch.manual_seed(0)
    model = VideoMamba(
        arch=dict(embed_dims=64, depth=4), img_size=32, num_frames=2)
    mixer = model.layers[0].mixer
    assert torch.count_nonzero(model.cls_token) == 0
    assert torch.count_nonzero(model.temporal_pos_embedding) == 0
    assert 0.01 < model.pos_embed.std() < 0.03
    torch.testing.assert_close(mixer.A_log,
                               torch.log(torch.arange(1., 17.)).repeat(128, 1))
    assert torch.equal(mixer.D, torch.ones(128))
    for proj in (mixer.dt_proj, mixer.dt_proj_b, mixer.in_proj, mixer.x_proj):
        assert 0.015 < proj.weight.std() < 0.025
        if proj.bias is not None:  # dt_proj bias zeroed by the Linear init
            assert torch.count_nonzero(proj.bias) == 0
    bound = 1 / math.sqrt(128) / math.sqrt(4)  # kaiming(a=sqrt5) / sqrt(depth)
    w = mixer.out_proj.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_mixer_directions_are_causal_and_anticausal():
    torch.manual_seed(0)
    mixer = BiMambaMixer(16, d_state=4)
    u = torch.randn(2, 11, 16)
    u2 = u.clone()
    u2[:, 5] += 1.0
    with torch.no_grad():
        f1, b1 = mixer.forward_directions(u)
        f2, b2 = mixer.forward_directions(u2)
    df = (f1 - f2).abs().amax((0, 1))
    db = (b1 - b2).abs().amax((0, 1))
    assert (df[:5] == 0).all() and (df[5:] > 0).all()  # forward: t >= 5
    assert (db[6:] == 0).all() and (db[:6] > 0).all()  # backward: t <= 5


def test_mixer_zero_tokens_stay_zero():
    """A zero input token gives exactly zero output (SiLU(z) = 0): the
    reason zero prompt slots stay zero through a plain backbone."""
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4)
    h = torch.randn(2, 9, 16)
    h[:, [3, 7]] = 0
    with torch.no_grad():
        out, res = block(h)
        out2, _ = block(out, res)
    assert torch.count_nonzero(out[:, [3, 7]]) == 0
    assert torch.count_nonzero(out2[:, [3, 7]]) == 0
    assert out[:, [2, 4]].abs().min() > 0


def test_scan_impl_passed_through():
    model = small_model(scan_impl='reference')
    assert all(layer.mixer.scan_impl == 'reference' for layer in model.layers)
    ref = model.eval()
    fast = small_model(scan_impl='fast').eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# SSP integration: trainable set, behaviour at init
# --------------------------------------------------------------------------
SSP = dict(num_prompts=3, hidden_dims=8, attn_dims=8, num_heads=2)


@pytest.mark.parametrize('ssp,freeze,expected', [
    (SSP, None, 'ssp+norm_f'),
    (None, None, 'all'),
    (None, True, 'norm_f'),
    (SSP, False, 'all'),
])
def test_trainable_set(ssp, freeze, expected):
    model = small_model(ssp=ssp, freeze_backbone=freeze)
    names = {k for k, p in model.named_parameters() if p.requires_grad}
    every = {k for k, _ in model.named_parameters()}
    want = {
        'all': every,
        'norm_f': {'norm_f.weight'},
        'ssp+norm_f':
        {k
         for k in every if k.startswith('ssp.')} | {'norm_f.weight'},
    }[expected]
    assert names == want


@pytest.mark.parametrize('arch,ssp_params', [('tiny', 1_384_154),
                                             ('small', 1_901_210),
                                             ('middle', 2_418_274)])
def test_trainable_count_paper_setting(arch, ssp_params):
    """224 x 224, 8 frames, P = 3: SSP ("2.41M" for middle) + norm_f."""
    with torch.device('meta'):
        model = VideoMamba(arch=arch, ssp=dict())
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == ssp_params + model.embed_dims


def test_ssp_at_init_equals_plain_backbone_with_zero_slots():
    """docs/ssp.md#ssp-initialisation-and-step-0: at init every prompt is
    exactly zero, so the SSP model is the plain backbone run on a sequence
    with P zero tokens per frame. The zero tokens are *not* transparent:
    without them the output differs."""
    torch.manual_seed(0)
    plain = small_model().eval()
    torch.manual_seed(0)
    ssp = small_model(ssp=SSP).eval()
    ssp.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out_ssp = ssp(x)
        seq = plain.forward_embed(x)
        b, _, c = seq.shape
        tok = seq[:, 1:].reshape(b, 3, 4, c)
        tok = torch.cat([tok, tok.new_zeros(b, 3, 3, c)], dim=2)
        seq = torch.cat([seq[:, :1], tok.flatten(1, 2)], dim=1)
        hidden, residual = plain.forward_blocks(seq)
        out_slots = plain.norm_f(residual[:, 0] + hidden[:, 0])
        out_plain = plain(x)
    assert torch.equal(out_ssp, out_slots)
    # small with the tiny random init weights (7e-5 here), but far above
    # float32 rounding: zero tokens decay the scan state and shift the conv
    assert (out_ssp - out_plain).abs().max() > 1e-5


def test_step0_gradients():
    """docs/ssp.md#ssp-initialisation-and-step-0: at init only 5 SSP tensors
    (and norm_f) get a gradient."""
    torch.manual_seed(0)
    model = small_model(ssp=SSP)
    model.train()
    model(torch.randn(2, 3, 3, 32, 32)).pow(2).sum().backward()
    nonzero = {
        k
        for k, p in model.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert nonzero == {
        'ssp.inner_prompt.conv.weight', 'ssp.inner_prompt.conv.bias',
        'ssp.inner_prompt.fc2.bias', 'ssp.inner_prompt.inter.convs.bias',
        'ssp.inner_prompt.inter.heads.bias', 'norm_f.weight'
    }
    assert all(p.grad is None for k, p in model.named_parameters()
               if not p.requires_grad)


def test_all_ssp_tensors_train_once_nonzero():
    model = randomize_ssp(small_model(ssp=SSP))
    model.train()
    model(torch.randn(2, 3, 3, 32, 32)).pow(2).sum().backward()
    for k, p in model.ssp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k


# --------------------------------------------------------------------------
# precision and memory options
# --------------------------------------------------------------------------
def test_bf16_autocast_keeps_fp32_residual():
    model = randomize_ssp(small_model(ssp=SSP))
    x = torch.randn(2, 3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    dtypes = []
    hook = model.layers[-1].register_forward_hook(
        lambda m, a, o: dtypes.append((o[0].dtype, o[1].dtype)))
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x)
    hook.remove()
    out.float().pow(2).sum().backward()
    assert dtypes == [(torch.bfloat16, torch.float32)]
    assert all(p.grad is not None for p in model.ssp.parameters())
    rel = (out.float() - ref).abs().max() / ref.abs().max()
    assert rel < 0.05, rel


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    a = randomize_ssp(small_model(ssp=SSP, drop_path_rate=0.3))
    b = randomize_ssp(small_model(ssp=SSP, drop_path_rate=0.3, with_cp=True))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 3, 32, 32)
    grads = []
    for m in (a, b):
        m.train()
        torch.manual_seed(1)
        m(x).pow(2).sum().backward()
        grads.append({
            k: p.grad
            for k, p in m.named_parameters() if p.grad is not None
        })
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], msg=k)
