# Copyright (c) mmstop contributors. All rights reserved.
"""tools/model_converters/ssp_official_to_mmstop.py."""
import os.path as osp
import runpy

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from mmstop.registry import MODELS

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'model_converters',
    'ssp_official_to_mmstop.py')

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread')


def tool_main(*argv):
    return runpy.run_path(TOOL, run_name='not_main')['main'](list(argv))


def recognizer(num_frames=4, img_size=64, num_classes=5, ssp=True):
    init_default_scope('mmaction')
    return MODELS.build(
        dict(
            type='Recognizer3D',
            backbone=dict(
                type='VideoMamba',
                arch='tiny',
                img_size=img_size,
                num_frames=num_frames,
                ssp=dict() if ssp else None),
            cls_head=dict(
                type='TimeSformerHead',
                num_classes=num_classes,
                in_channels=192)))


@pytest.fixture(scope='module')
def official_sd(ssp_weights):
    return ssp_weights.official_state_dict('tiny', 4, 5, 3, 64)


@pytest.mark.parametrize('wrapper', ['module', 'model', None])
def test_convert_official_ssp_checkpoint(tmp_path, official_sd, wrapper):
    sd = official_sd
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmstop.pth'
    torch.save({wrapper: sd, 'epoch': 9} if wrapper else sd, src)
    tool_main(str(src), str(dst))
    ckpt = torch.load(dst, weights_only=False)
    state = ckpt['state_dict']
    assert ckpt['meta']['converter'] == 'ssp_official_to_mmstop'
    assert state['cls_head.fc_cls.weight'] is not None
    assert sum(k.startswith('backbone.ssp.') for k in state) == 60
    model = recognizer()
    model.load_state_dict(state, strict=True)  # every key, right shapes
    own = model.state_dict()
    for k, v in sd.items():
        ours = ('cls_head.fc_cls.' +
                k[5:] if k.startswith('head.') else 'backbone.ssp.' +
                k if k.startswith(('inner_prompt.', 'prompt_attentions.',
                                   'dynamic_scales.')) else 'backbone.' + k)
        assert torch.equal(own[ours], v), k


def test_output_works_with_load_from(tmp_path, ssp_weights):
    """MMEngine's load_checkpoint (load_from / tools/test.py) reads the
    result; a published 8-frame video checkpoint is resized for 16 frames."""
    sd = {
        k: ssp_weights.make_tensor(k, s)
        for k, s in ssp_weights.published_keys('videomamba_t16_k400_f8_res224')
    }
    src, dst = tmp_path / 'k400.pth', tmp_path / 'mmstop.pth'
    torch.save(sd, src)
    tool_main(str(src), str(dst))
    model = recognizer(num_frames=16, img_size=224, num_classes=400, ssp=False)
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    assert torch.equal(model.cls_head.fc_cls.weight, sd['head.weight'])
    assert model.backbone.temporal_pos_embedding.shape == (1, 16, 192)
    assert torch.equal(model.backbone.layers[3].mixer.A_b_log,
                       sd['layers.3.mixer.A_b_log'])


def test_unknown_keys_error_and_ignore_prefix(tmp_path, official_sd):
    sd = {
        k: v
        for k, v in official_sd.items()
        if k.startswith(('layers.', 'norm_f', 'cls_token', 'pos_embed',
                         'patch_embed'))
    }
    sd['distill_head.weight'] = torch.zeros(2)
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmstop.pth'
    torch.save({'model': sd}, src)
    with pytest.raises(SystemExit, match='distill_head.weight'):
        tool_main(str(src), str(dst))
    assert not dst.exists()
    tool_main(str(src), str(dst), '--ignore-prefix', 'distill_head.')
    assert 'backbone.norm_f.weight' in torch.load(dst)['state_dict']


def test_missing_source(tmp_path):
    with pytest.raises(SystemExit, match='not found'):
        tool_main(str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth'))


def test_training_checkpoint_converts_and_empty_source_refused(
        tmp_path, official_sd, capsys):
    """An official training checkpoint (optimizer, argparse args, scaler)
    converts under weights_only=True; a source without a VideoMamba/SSP key
    writes nothing."""
    import argparse
    src, dst = tmp_path / 'checkpoint-best.pth', tmp_path / 'mmstop.pth'
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    torch.save(
        dict(
            model=official_sd,
            optimizer=optimizer.state_dict(),
            epoch=9,
            scaler={'scale': 65536.0},
            args=argparse.Namespace(lr=5e-4, model='videomamba')), src)
    tool_main(str(src), str(dst))
    assert len(torch.load(dst,
                          weights_only=True)['state_dict']) == len(official_sd)
    assert f'converted {len(official_sd)} of {len(official_sd)} tensors' in (
        capsys.readouterr().out)
    torch.save({'model': {}}, src)
    dst.unlink()
    with pytest.raises(SystemExit, match='no recognisable parameter'):
        tool_main(str(src), str(dst))
    assert not dst.exists()
