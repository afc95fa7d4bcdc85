# Copyright (c) mmstop contributors. All rights reserved.
"""STOPCLIP on a small random CLIP: modes, freezing, text, errors.

The official numerics are proved in ``tests/models/test_stop_parity.py``;
this file checks behaviour on small widths.
"""
import itertools

import pytest
import torch
from helpers import TINY_ARCH_SHORT_TEXT

from mmstop.models.backbones import STOPCLIP
from mmstop.models.backbones.stop_clip import TRAINABLE_PREFIXES

# 32 px frames, 8 px patches (4x4 grid), width 64, 2 layers per tower
ARCH = TINY_ARCH_SHORT_TEXT
B, T, N, WIDTH, EMBED = 2, 3, 16, 64, 64
SOT, EOT = 510, 511

MODES = ['official', 'paper', None]
# official modules with smaller kernels/channels (their CPU conv backward is
# slow at the official sizes; the parity tests cover those)
SMALL = dict(
    intra=dict(
        official=dict(
            hidden_channels=(2, 2, 3),
            mlp_channels=4,
            kernel_size=(3, 5, 5),
            scorer_kernel_size=(3, 5, 5)),
        paper=dict()),
    inter=dict(
        official=dict(
            hidden_channels=3,
            kernel_size=(3, 5, 9),
            scorer_kernel_size=(3, 5, 5)),
        paper=dict()))


def mode_cfg(kind, mode):
    if mode is None or isinstance(mode, dict):
        return mode
    return dict(mode=mode, **SMALL[kind][mode])


def build(intra='official', inter='official', **kwargs):
    intra_cfg, inter_cfg = mode_cfg('intra', intra), mode_cfg('inter', inter)
    torch.manual_seed(0)
    return STOPCLIP(
        arch=ARCH,
        num_frames=T,
        intra_prompt=intra_cfg,
        inter_prompt=inter_cfg,
        **kwargs)


def frames(seed=1, batch=B):
    torch.manual_seed(seed)
    return torch.randn(batch, T, 3, 32, 32)


def text_ids(*lengths, total=10):
    """Rows ``[SOT, 1..n, EOT, 0...]`` of ``total`` tokens."""
    ids = torch.zeros(len(lengths), total, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, 0] = SOT
        ids[row, 1:n + 1] = torch.arange(1, n + 1) * 7
        ids[row, n + 1] = EOT
    return ids


# ---------------------------------------------------------------------------
# shapes and intermediates
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('intra,inter', list(itertools.product(MODES, MODES)))
def test_mode_combinations(intra, inter):
    model = build(intra, inter).eval()
    with torch.no_grad():
        feature, out = model.encode_video(frames(), return_intermediates=True)
    assert feature.shape == (B, EMBED) and torch.isfinite(feature).all()
    assert out['h0'].shape == (B, T, 1 + N, WIDTH)
    assert out['vis_global_layers'].shape == (2, B, 4, WIDTH)
    if intra == 'official':
        assert out['prompted_pixels'].shape == (B, T, 3, 32, 32)
    if intra == 'paper':
        assert out['intra_mask_layers'].shape == (2, B, T, N)
        assert (out['intra_mask_layers'].sum(-1) == 6).all()
    if intra is not None:
        assert out['mask'].shape == (B, T, 4, 4)
    else:
        assert 'mask' not in out
    if inter == 'official':
        assert out['inter_prompt'].shape == (B, T, 4, WIDTH)
    elif inter == 'paper':
        M = model.inter_prompt.max_prompts
        assert out['inter_prompt'].shape == (B, T, M, WIDTH)
        assert out['inter_padding'].shape == (B, T, M)
        assert out['inter_counts'].shape == (B, T)
        assert torch.equal(out['inter_padding'].sum(-1),
                           M - out['inter_counts'])
    else:
        assert 'inter_prompt' not in out and 'w' not in out


def test_pool_must_be_known():
    # what each option computes: test_stop_official_structure.py
    with pytest.raises(ValueError, match="'global0'"):
        build(pool='cls0')


def test_linear_prompt_generator_video_and_text():
    model = build('paper', 'paper', prompt_generator='linear').eval()
    text_prompts, visual_prompts = model.prompt_generator()
    assert visual_prompts.shape == (2, 4, WIDTH)  # tiled over the frames
    with torch.no_grad():
        assert model.encode_video(frames()).shape == (B, EMBED)
        assert model.encode_text(text_ids(3, 5)).shape == (2, EMBED)


def test_forward_encodes_clips_and_texts_with_one_prompt_set():
    """forward: NCTHW clips -> encode_video; with token ids also the texts,
    from the same generator call, and the similarity logits."""
    model = build().eval()
    x, ids = frames(), text_ids(3, 5, 2)
    clips = x.transpose(1, 2)
    with torch.no_grad():
        video = model.encode_video(x)
        text = model.encode_text(ids)
        assert torch.equal(model(clips), video)
        v2, t2 = model(clips, ids)
        assert torch.equal(v2, video) and torch.equal(t2, text)
        v3, t3, out = model(clips, ids, return_intermediates=True)
        _, video_out = model.encode_video(x, return_intermediates=True)
        feature, only_video = model(clips, return_intermediates=True)
    assert torch.equal(v3, video) and torch.equal(t3, text)
    assert set(video_out) | {
        'TP', 'txt_eot_layers', 'text_feature', 'sim', 'logit_scale_exp'
    } == set(out)
    cos = torch.nn.functional.normalize(text, dim=-1) @ \
        torch.nn.functional.normalize(video, dim=-1).t()
    torch.testing.assert_close(out['sim'], 100. * cos)
    assert torch.equal(feature, video) and set(only_video) == set(video_out)
    with pytest.raises(ValueError, match=r'\[N, C, T, H, W\]'):
        model(x[0])


# ---------------------------------------------------------------------------
# paper modes inside the backbone
# ---------------------------------------------------------------------------
def test_paper_intra_layers_option():
    model = build(dict(mode='paper', layers=[1], num_regions=3), None).eval()
    with torch.no_grad():
        _, out = model.encode_video(frames(), return_intermediates=True)
    assert out['intra_mask_layers'].shape == (1, B, T, N)
    assert (out['intra_mask_layers'].sum(-1) == 3).all()
    assert 'mask' not in out  # no layer-0 region mask for the inter prompt
    with pytest.raises(ValueError, match='layers'):
        build(dict(mode='paper', layers=[2]), None)


def test_paper_intra_changes_only_prompted_layers():
    """Layer 0 unprompted: its output equals the no-intra model's."""
    plain = build(None, None).eval()
    model = build(dict(mode='paper', layers=[1]), None).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    x = frames()
    with torch.no_grad():
        _, a = plain.encode_video(x, return_intermediates=True)
        _, b = model.encode_video(x, return_intermediates=True)
    torch.testing.assert_close(
        a['vis_global_layers'][0], b['vis_global_layers'][0], rtol=0, atol=0)
    assert (a['vis_global_layers'][1] != b['vis_global_layers'][1]).any()


@pytest.mark.parametrize('intra', ['official', 'paper'])
def test_paper_inter_padded_slots_do_not_influence_outputs(intra):
    model = build(intra, dict(mode='paper', max_prompts=5)).eval()
    x = frames()
    with torch.no_grad():
        ref, ref_out = model.encode_video(x, return_intermediates=True)
    padding = ref_out['inter_padding']
    assert padding[:, 0].all()  # frame 0 has no group: always some padding
    forward = model.inter_prompt.forward

    def perturbed(where, *args, **kwargs):
        out = forward(*args, **kwargs)
        noise = 100 * torch.randn_like(out['prompts'])
        sel = where(out['padding_mask'])[..., None]
        out['prompts'] = torch.where(sel, noise, out['prompts'])
        return out

    model.inter_prompt.forward = lambda *a, **k: perturbed(
        lambda pad: pad, *a, **k)
    with torch.no_grad():
        feature, out = model.encode_video(x, return_intermediates=True)
    assert torch.equal(feature, ref)
    assert torch.equal(out['vis_cls_layers'], ref_out['vis_cls_layers'])
    assert torch.equal(out['vis_global_layers'], ref_out['vis_global_layers'])
    # the real (unpadded) slots do influence the outputs
    model.inter_prompt.forward = lambda *a, **k: perturbed(
        lambda pad: ~pad, *a, **k)
    with torch.no_grad():
        assert not torch.allclose(model.encode_video(x), ref)


def test_paper_inter_counts_and_layer0_region_mask():
    model = build('paper',
                  dict(mode='paper', min_prompts=2, max_prompts=7,
                       beta=4.)).eval()
    with torch.no_grad():
        _, out = model.encode_video(frames(), return_intermediates=True)
    counts = out['inter_counts']
    assert (counts[:, 0] == 0).all()
    expected = torch.ceil(12. * out['w'][:, 1:]).clamp(2, 7).long()
    assert torch.equal(counts[:, 1:], expected)
    # the inter prompt used the layer-0 intra mask (beta-weighted W)
    torch.testing.assert_close(
        out['mask'].flatten(2), out['intra_mask_layers'][0], rtol=0, atol=0)


# ---------------------------------------------------------------------------
# freezing and gradients
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('modes', [('official', 'official'),
                                   ('paper', 'paper')])
def test_only_prompt_modules_train(modes):
    model = build(*modes).train()
    trainable = set(model.trainable_parameter_names())
    assert trainable and all(
        n.startswith(TRAINABLE_PREFIXES) for n in trainable)
    assert not any(p.requires_grad for p in model.clip.parameters())
    assert not model.clip.training  # frozen CLIP stays in eval mode
    video, out = model.encode_video(frames(), return_intermediates=True)
    text = model.encode_text(text_ids(2, 4))
    (video @ text.t()).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable
    assert all(p.grad is None for p in model.clip.parameters())
    missing = trainable - with_grad
    if modes[0] == 'official':
        # official quirk: the hard mask gives the pixel region scorer none
        assert missing == {
            'intra_prompt.region_scorer.weight',
            'intra_prompt.region_scorer.bias'
        }
    else:
        # only the heads of the counts that occurred were used
        unused = set(model.inter_prompt.heads) - {
            str(n)
            for n in out['inter_counts'].unique().tolist()
        }
        assert unused  # counts 1..12 cannot all occur in 2x2 gaps
        assert missing == {
            f'inter_prompt.heads.{n}.{p}'
            for n in unused
            for p in ('weight', 'bias')
        }


def test_freeze_clip_false_trains_clip():
    model = build(freeze_clip=False)
    assert all(p.requires_grad for p in model.clip.parameters())


# ---------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------
def test_postfix_text_prompts_get_zero_gradient():
    model = build(None, None).eval()
    prompts = model.prompt_generator()[0].detach().requires_grad_()
    assert prompts.shape[1] == 8
    model.encode_text(text_ids(3, 6), prompts).sum().backward()
    assert (prompts.grad[:, 4:] == 0).all()  # causal mask: inert (official)
    assert (prompts.grad[:, :4] != 0).any()


def test_text_postfix_prompts_false_removes_them():
    with_postfix = build(None, None).eval()
    without = build(None, None, text_postfix_prompts=False).eval()
    assert without.prompt_generator()[0].shape[1] == 4
    state = {
        k: v
        for k, v in with_postfix.state_dict().items()
        if k.startswith(('clip.', 'text_adapters.'))
    }
    without.load_state_dict(state, strict=False)
    prompts = with_postfix.prompt_generator()[0]
    ids = text_ids(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(
            without.encode_text(ids, prompts[:, :4]),
            with_postfix.encode_text(ids, prompts))


def test_encode_text_reads_the_eot_token():
    model = build(None, None).eval()
    ids = text_ids(2, 6)
    with torch.no_grad():
        feature = model.encode_text(ids)
        # rows are independent and each uses its own EOT position
        for row in range(2):
            torch.testing.assert_close(
                model.encode_text(ids[row:row + 1])[0], feature[row])
        # tokens after EOT are never seen (causal mask)
        noisy = ids.clone()
        noisy[0, 4:] = 3
        torch.testing.assert_close(model.encode_text(noisy)[0], feature[0])
        # shorter padding, same tokens: same feature
        torch.testing.assert_close(
            model.encode_text(ids[:, :8])[1], feature[1])
        # EOT in the last position of a full-length row
        full = text_ids(14, total=16)
        assert model.encode_text(full).shape == (1, EMBED)
        # moving EOT changes the feature
        assert not torch.allclose(
            model.encode_text(text_ids(3))[0], feature[0])


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_bad_frames_name_expected_shape():
    model = build(None, None)
    for bad in (torch.zeros(B, T + 1, 3, 32,
                            32), torch.zeros(B, T, 3, 16,
                                             16), torch.zeros(T, 3, 32, 32)):
        with pytest.raises(ValueError, match=r'\[B, 3, 3, 32, 32\]'):
            model.encode_video(bad)


def test_bad_text_input():
    model = build(None, None)
    with pytest.raises(ValueError, match=r'\[B, L\]'):
        model.encode_text(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='context length 16'):
        model.encode_text(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize('field', ['intra_prompt', 'inter_prompt'])
@pytest.mark.parametrize('mode', ['official', 'paper'])
def test_unknown_option_key_is_named(field, mode):
    with pytest.raises(TypeError, match='not_an_option'):
        STOPCLIP(
            arch=ARCH,
            num_frames=T,
            **{field: dict(mode=mode, not_an_option=1)})


def test_unknown_mode_and_odd_text_prompts():
    with pytest.raises(ValueError, match="'pixel'"):
        STOPCLIP(arch=ARCH, num_frames=T, intra_prompt=dict(mode='pixel'))
    with pytest.raises(ValueError, match='num_text_prompts must be even'):
        STOPCLIP(arch=ARCH, num_frames=T, num_text_prompts=7)


def test_official_inter_prompt_rejects_a_single_frame_batch():
    """Batch min-max normalisation over B*T = 1 frame is 0/0: an error
    before the forward names the fix instead of NaN features."""
    torch.manual_seed(0)
    model = STOPCLIP(
        arch=ARCH,
        num_frames=1,
        intra_prompt=mode_cfg('intra', 'official'),
        inter_prompt=mode_cfg('inter', 'official'))
    one = torch.randn(1, 1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"B\*T|1 video of 1 frame") as err:
        model.encode_video(one)
    assert "inter_prompt=dict(normalize='video')" in str(err.value)
    # per-video normalisation is defined for one frame; two videos of one
    # frame are fine in official mode too
    torch.manual_seed(0)
    fixed = STOPCLIP(
        arch=ARCH,
        num_frames=1,
        intra_prompt=mode_cfg('intra', 'official'),
        inter_prompt=dict(mode_cfg('inter', 'official'), normalize='video'))
    assert torch.isfinite(fixed.encode_video(one)).all()
    assert model.batch_dependent and not fixed.batch_dependent
    assert not build(None, None).batch_dependent
    assert torch.isfinite(model.encode_video(torch.randn(2, 1, 3, 32,
                                                         32))).all()


def test_init_cfg_pretrained_is_strict(tmp_path):
    """A STOPCLIP checkpoint of another frame count names the mis-shaped key
    instead of leaving it at its random init; allow_mismatch tolerates it."""
    from mmstop.utils.checkpoint import CheckpointMismatchError
    source = build()  # num_frames = T = 3
    path = str(tmp_path / 'stop_T3.pth')
    torch.save(
        {
            'state_dict': {
                'backbone.' + k: v
                for k, v in source.state_dict().items()
            }
        }, path)
    init = dict(type='Pretrained', checkpoint=path, prefix='backbone')
    small = dict(
        intra_prompt=mode_cfg('intra', 'official'),
        inter_prompt=mode_cfg('inter', 'official'))
    model = STOPCLIP(arch=ARCH, num_frames=5, init_cfg=init, **small)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'1 mis-shaped key\(s\): prompt_generator\.'
            r'embedding\.weight: checkpoint \(20, 128\), model '
            r'\(28, 128\)'):
        model.init_weights()
    model = STOPCLIP(
        arch=ARCH,
        num_frames=5,
        init_cfg=dict(init, allow_mismatch=[r'prompt_generator\.embedding\.']),
        **small)
    model.init_weights()
    assert torch.equal(model.global_prompts, source.global_prompts)
