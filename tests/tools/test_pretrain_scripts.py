# Copyright (c) mmstop contributors. All rights reserved.
"""tools/pretrain/: shortened runs of both scripts, and the shipped
checkpoints (their recorded sha256, and strict loading into the configs
that use them)."""
import json
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.registry import MODELS
from mmstop.utils.checkpoint import read_checkpoint
from mmstop.utils.pretraining import sha256_file

CHECKPOINTS = osp.join(REPO_ROOT, 'checkpoints')


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_tiny_clip_script_short_run(load_tool, tmp_path):
    script = load_tool('tools/pretrain/tiny_clip.py')
    out = str(tmp_path / 'clip.pth')
    script.main([
        out, '--steps', '3', '--batch-size', '8', '--eval-images', '16',
        '--log-interval', '1'
    ])
    info = read_json(str(tmp_path / 'clip.json'))
    assert info['sha256'] == sha256_file(out)
    assert [s for s, _ in info['loss_log']] == [0, 1, 2]
    assert 0. <= info['zero_shot']['held_out_top1'] <= 1.
    # the published format: OpenAI names, float16, read by STOP's loader
    state = read_checkpoint(out)
    assert 'visual.conv1.weight' in state and 'token_embedding.weight' in state
    assert all(v.dtype == torch.float16 for v in state.values()
               if v.is_floating_point())
    backbone = MODELS.build(
        dict(type='STOPCLIP', arch=script.ARCH, num_frames=2, pretrained=out))
    backbone.init_weights()
    torch.testing.assert_close(backbone.clip.visual.proj,
                               state['visual.proj'].float())


def test_tiny_videomamba_script_short_run(load_tool, tmp_path):
    script = load_tool('tools/pretrain/tiny_videomamba.py')
    out = str(tmp_path / 'vm.pth')
    script.main([
        out, '--steps', '3', '--batch-size', '4', '--eval-clips', '8',
        '--log-interval', '1'
    ])
    info = read_json(str(tmp_path / 'vm.json'))
    assert info['sha256'] == sha256_file(out)
    assert info['val_clips'] == 8
    state = read_checkpoint(out)['model']
    assert state['head.weight'].shape == (24, script.ARCH['embed_dims'])
    backbone = script.build_backbone(pretrained=out)
    backbone.init_weights()
    torch.testing.assert_close(backbone.patch_embed.proj.weight,
                               state['patch_embed.proj.weight'].float())


@pytest.mark.parametrize('name',
                         ['tiny_clip_shapes', 'tiny_videomamba_motion'])
def test_shipped_checkpoint_is_what_its_provenance_says(name):
    path = osp.join(CHECKPOINTS, name + '.pth')
    info = read_json(osp.join(CHECKPOINTS, name + '.json'))
    assert sha256_file(path) == info['sha256']
    assert osp.getsize(path) == info['bytes']
    assert info['command'].endswith(f'checkpoints/{name}.pth')
    with open(osp.join(CHECKPOINTS, 'README.md')) as f:
        assert info['sha256'] in f.read()


@pytest.mark.parametrize('config', [
    'stop_clip_motion.py', 'stop_clip_paper_motion.py',
    'clip_zeroshot_motion.py', 'clip_probe_motion.py',
    'ssp_videomamba_motion.py', 'videomamba_probe_motion.py'
])
def test_motion_configs_load_the_shipped_weights(config):
    """Every tensor of the shipped checkpoint reaches the config's backbone
    (the loaders are strict: a missing or misshapen tensor raises)."""
    init_default_scope('mmaction')
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    model = MODELS.build(cfg.model)
    model.init_weights()
    backbone = model.backbone
    if 'videomamba' in config:
        state = read_checkpoint(cfg.model.backbone.pretrained)['model']
        torch.testing.assert_close(backbone.cls_token,
                                   state['cls_token'].float())
    else:
        state = read_checkpoint(cfg.model.backbone.pretrained)
        torch.testing.assert_close(backbone.clip.visual.proj,
                                   state['visual.proj'].float())
