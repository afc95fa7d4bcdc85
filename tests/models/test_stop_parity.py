# Copyright (c) mmstop contributors. All rights reserved.
"""Official-mode STOP against the golden data of the official code.

The golden data (``stop/`` of ``$MMSTOP_PARITY_DIR``, default
``../shared/parity``) hold the outputs of the official model
(zhoujiahuan1991/CVPR2025-STOP @ 7253928) on deterministic weights
(``weights.py``) and inputs, in float32 and float64
(``docs/parity.md#stop-golden-data``; the tolerances used here:
``docs/parity.md#stop-tolerances``). The official weights go through the
same converter a user runs
(``tools/model_converters/stop_official_to_mmstop.py``).
"""
import json
import os.path as osp
import runpy

import pytest
import torch
from helpers import STOP_TOL32, STOP_TOL64
from helpers.stop import official_layout_forward

from mmstop.models.backbones import STOPCLIP
from mmstop.models.converters import convert_official_stop

pytestmark = pytest.mark.parity

_STATE_DICTS = {}


def official_state_dict(weights, T, mode):
    if (T, mode) not in _STATE_DICTS:
        _STATE_DICTS[(T, mode)] = weights.official_state_dict(T, mode)
    return _STATE_DICTS[(T, mode)]


def build_official(weights, T, mode, dtype=torch.float32):
    model = STOPCLIP(arch='vit-b32', num_frames=T, prompt_generator=mode)
    model.load_state_dict(
        convert_official_stop(official_state_dict(weights, T, mode)),
        strict=True)
    return model.to(dtype).eval()


def actual_tensor(out, key):
    if key.startswith('prompted_pixels_s'):
        step = int(key[len('prompted_pixels_s'):])
        return out['prompted_pixels'][..., ::step, ::step]
    return out[key]


# slow (pytest.ini): measured 33-79 s each (whichever runs first also
# generates the ViT-B/32 weights: 46 s for linear T=4 float32)
CONFIGS = [
    pytest.param(
        mode,
        T,
        B,
        f64,
        id=f'{mode}-T{T}-B{B}-{"f64" if f64 else "f32"}',
        marks=pytest.mark.slow) for mode in ('transformer', 'linear')
    for T, B in ((4, 2), (12, 3)) for f64 in (False, True)
]


@pytest.mark.parametrize('mode,T,B,f64', CONFIGS)
def test_official_parity(stop_parity_dir, stop_weights, mode, T, B, f64,
                         device):
    dtype = torch.float64 if f64 else torch.float32
    inputs = torch.load(osp.join(stop_parity_dir, f'inputs_T{T}_B{B}.pt'))
    suffix = '_f64' if f64 else ''
    expected = torch.load(
        osp.join(stop_parity_dir, f'expected_{mode}_T{T}_B{B}{suffix}.pt'))
    sd = official_state_dict(stop_weights, T, mode)
    assert (stop_weights.state_dict_digest(sd) == expected['meta']
            ['weights_digest'])

    model = build_official(stop_weights, T, mode, dtype).to(device)
    frames = stop_weights.load_frames(inputs, dtype).to(device)
    out = official_layout_forward(model, frames, inputs['text_ids'].to(device))

    assert torch.equal(out['mask'].cpu(), expected['mask'])
    checked = []
    for key, ref in expected.items():
        if key in ('meta', 'mask'):
            continue
        actual = actual_tensor(out, key).cpu().to(ref.dtype)
        assert actual.shape == ref.shape, key
        torch.testing.assert_close(
            actual,
            ref,
            rtol=0,
            atol=STOP_TOL64 if f64 else STOP_TOL32[key],
            msg=lambda m, key=key: f'{key}: {m}')
        checked.append(key)
    # every stage was compared (the T12_B3 float64 files hold no per-layer
    # visual tokens; docs/parity.md#stop-golden-data)
    assert {
        'mask_pooled', 'w', 'inter_prompt', 'TP', 'txt_eot_layers',
        'video_feature', 'text_feature', 'sim'
    } <= set(checked)


@pytest.mark.slow  # 32 s when it generates the weights (9 s after parity)
def test_stages_a_to_c_full_size(stop_parity_dir, stop_weights, device):
    """Full-size pixels, h0 and the space-time attention (both modes share
    them)."""
    inputs = torch.load(osp.join(stop_parity_dir, 'inputs_T4_B2.pt'))
    expected = torch.load(osp.join(stop_parity_dir, 'expected_stop_T4_B2.pt'))
    model = build_official(stop_weights, 4, 'transformer').to(device)
    frames = stop_weights.load_frames(inputs).reshape(2, 4, 3, 224, 224)
    with torch.no_grad():
        _, out = model.encode_video(
            frames.to(device), return_intermediates=True)
    out = {k: v.cpu() for k, v in out.items()}
    assert torch.equal(out['mask'], expected['mask'])
    torch.testing.assert_close(
        out['prompted_pixels'][0],
        expected['prompted_pixels_v0'],
        rtol=0,
        atol=STOP_TOL32['prompted_pixels_v0'])
    torch.testing.assert_close(
        out['h0'].flatten(0, 1), expected['h0'], rtol=0, atol=STOP_TOL32['h0'])
    torch.testing.assert_close(
        out['inter_attn'],
        expected['inter_attn'],
        rtol=0,
        atol=STOP_TOL32['inter_attn'])
    for key in ('mask_pooled', 'w_raw', 'w'):
        torch.testing.assert_close(
            out[key], expected[key], rtol=0, atol=STOP_TOL32[key])


@pytest.mark.parametrize('mode,T', [('transformer', 4), ('transformer', 12),
                                    ('linear', 4), ('linear', 12)])
def test_trainable_parameters_match_official(stop_parity_dir, mode, T):
    """Same trainable count as the official model, every frozen key frozen."""
    with open(osp.join(stop_parity_dir, f'keys_{mode}_T{T}.json')) as f:
        table = json.load(f)
    with torch.device('meta'):  # shapes only, no 164M-parameter init
        model = STOPCLIP(arch='vit-b32', num_frames=T, prompt_generator=mode)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in model.parameters()
               if p.requires_grad) == table['num_trainable']
    assert sum(p.numel() for p in model.parameters()) == table['num_params']
    for entry in table['keys']:
        (name, ), = [convert_official_stop({entry['key']: torch.zeros(0)})]
        assert (name in trainable) == entry['trainable'], entry['key']


def test_documented_trainable_counts():
    # issue #2: 13,081,528 (transformer, T=12) and 4,333,752 (linear)
    for mode, expected in (('transformer', 13081528), ('linear', 4333752)):
        with torch.device('meta'):
            model = STOPCLIP(
                arch='vit-b32', num_frames=12, prompt_generator=mode)
        assert sum(p.numel() for p in model.parameters()
                   if p.requires_grad) == expected


@pytest.mark.slow  # 17 s: it generates the ViT-B/32 weights
def test_converter_tool(tmp_path, stop_weights):
    """The CLI converts a DDP-wrapped official checkpoint; the result loads."""
    sd = official_state_dict(stop_weights, 4, 'linear')
    wrapped = {'module.clip.' + k: v for k, v in sd.items()}
    wrapped['module.clip.visual.position_ids'] = torch.arange(50)[None]
    src, dst = tmp_path / 'ckpt.pth.tar', tmp_path / 'mmstop.pth'
    torch.save(dict(epoch=3, state_dict=wrapped, optimizer={}), src)
    tool = osp.join(
        osp.dirname(__file__), '..', '..', 'tools', 'model_converters',
        'stop_official_to_mmstop.py')
    runpy.run_path(tool, run_name='not_main')['main']([str(src), str(dst)])
    state = torch.load(dst)['state_dict']
    assert all(k.startswith('backbone.') for k in state)
    model = STOPCLIP(arch='vit-b32', num_frames=4, prompt_generator='linear')
    model.load_state_dict({
        k[len('backbone.'):]: v
        for k, v in state.items()
    },
                          strict=True)
    torch.testing.assert_close(model.global_prompts,
                               sd['visual.prompt_embeddings'])


def test_converter_rejects_unknown_keys():
    with pytest.raises(KeyError, match='not_a_stop_key'):
        convert_official_stop({'clip.not_a_stop_key': torch.zeros(1)})
