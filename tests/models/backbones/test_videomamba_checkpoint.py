# Copyright (c) mmstop contributors. All rights reserved.
"""Loading the published VideoMamba checkpoint formats
(docs/ssp.md#checkpoints).

The files are not downloadable here: random checkpoints with the published
keys, shapes and wrappers (``weights.published_keys``) stand in for them.
"""
import logging
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from mmstop.models.backbones import VideoMamba, load_videomamba_checkpoint
from mmstop.models.converters import convert_official_ssp
from mmstop.registry import MODELS
from mmstop.utils.checkpoint import CheckpointMismatchError

IMAGE = 'videomamba_t16_in1k_res224'
VIDEO = 'videomamba_t16_k400_f8_res224'
_CACHE = {}

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread', 'torch_seed')


def published(weights, name):
    if name not in _CACHE:
        _CACHE[name] = {
            k: weights.make_tensor(k, s)
            for k, s in weights.published_keys(name)
        }
    return dict(_CACHE[name])


@contextmanager
def captured_logs():
    records = []

    class _Handler(logging.Handler):

        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = _Handler(level=logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def tiny(**kw):
    kw.setdefault('img_size', 224)
    kw.setdefault('num_frames', 8)
    return VideoMamba(arch='tiny', **kw)


def recognizer(num_classes, **backbone):
    init_default_scope('mmaction')
    backbone.setdefault('img_size', 224)
    backbone.setdefault('num_frames', 8)
    return MODELS.build(
        dict(
            type='Recognizer3D',
            backbone=dict(type='VideoMamba', arch='tiny', **backbone),
            cls_head=dict(
                type='TimeSformerHead',
                num_classes=num_classes,
                in_channels=192)))


def assert_layers_loaded(model, sd):
    own = model.state_dict()
    for k, v in sd.items():
        if k.startswith(('layers.', 'norm_f', 'cls_token', 'patch_embed.proj'
                         '.bias')):
            assert torch.equal(own[k], v), k


def test_image_checkpoint_inflated(tmp_path, ssp_weights):
    sd = published(ssp_weights, IMAGE)
    path = tmp_path / 'img.pth'
    torch.save({'model': sd}, path)  # published image wrapper
    model = tiny(pretrained=str(path), ssp=dict())
    with captured_logs() as logs:
        model.init_weights()
    assert torch.equal(model.patch_embed.proj.weight,
                       sd['patch_embed.proj.weight'].unsqueeze(2))
    assert torch.equal(model.pos_embed, sd['pos_embed'])
    assert torch.count_nonzero(model.temporal_pos_embedding) == 0
    assert_layers_loaded(model, sd)
    # SSP keeps its init, the 1000-class head is not part of the backbone
    assert torch.count_nonzero(model.ssp.inner_prompt.conv.weight) == 0
    text = '\n'.join(logs)
    assert 'inflated the 2-D patch kernel' in text
    assert "['bias', 'weight']" in text and 'no head' in text


def test_image_checkpoint_inflated_at_temporal_centre(tmp_path, ssp_weights):
    sd = published(ssp_weights, IMAGE)
    path = tmp_path / 'img.pth'
    torch.save({'model': sd}, path)
    model = tiny(tubelet_size=3, num_frames=9)
    load_videomamba_checkpoint(model, str(path))
    w = model.patch_embed.proj.weight
    assert w.shape == (192, 3, 3, 16, 16)
    assert torch.equal(w[:, :, 1], sd['patch_embed.proj.weight'])
    assert torch.count_nonzero(w[:, :, 0]) == 0
    assert torch.count_nonzero(w[:, :, 2]) == 0


def _linear_resize_by_hand(x, length):
    """(1, T, C) -> (1, length, C), linear with align_corners=False."""
    t_in = x.shape[1]
    rows = []
    for i in range(length):
        src = max((i + 0.5) * t_in / length - 0.5, 0.0)
        lo = min(int(src), t_in - 1)
        hi = min(lo + 1, t_in - 1)
        f = src - lo
        rows.append(x[0, lo] * (1 - f) + x[0, hi] * f)
    return torch.stack(rows)[None]


@pytest.mark.parametrize(
    'wrapper',
    ['bare', 'model', 'module', 'backbone.', 'encoder.', 'state_dict'])
def test_video_checkpoint_wrappers_and_interpolation(tmp_path, ssp_weights,
                                                     wrapper):
    sd = published(ssp_weights, VIDEO)
    if wrapper.endswith('.'):
        obj = {wrapper + k: v for k, v in sd.items()}
    elif wrapper == 'bare':
        obj = sd
    else:
        obj = {wrapper: sd, 'epoch': 3}
    path = tmp_path / 'vid.pth'
    torch.save(obj, path)
    model = tiny(img_size=64, num_frames=16)
    load_videomamba_checkpoint(model, str(path))
    assert_layers_loaded(model, sd)
    torch.testing.assert_close(
        model.temporal_pos_embedding,
        _linear_resize_by_hand(sd['temporal_pos_embedding'], 16))
    pos = sd['pos_embed']
    grid = pos[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=(4, 4), mode='bicubic', align_corners=False)
    torch.testing.assert_close(
        model.pos_embed,
        torch.cat([pos[:, :1],
                   grid.permute(0, 2, 3, 1).reshape(1, 16, 192)], 1))


def test_same_size_is_exact(tmp_path, ssp_weights):
    sd = published(ssp_weights, VIDEO)
    path = tmp_path / 'vid.pth'
    torch.save(sd, path)
    model = tiny()
    load_videomamba_checkpoint(model, str(path))
    for k in ('pos_embed', 'temporal_pos_embedding',
              'patch_embed.proj.weight'):
        assert torch.equal(model.state_dict()[k], sd[k]), k


def test_head_skipped_or_loaded_in_recognizer(tmp_path, ssp_weights):
    sd = published(ssp_weights, VIDEO)
    path = tmp_path / 'vid.pth'
    torch.save(sd, path)
    model = recognizer(5, ssp=dict())
    before = model.cls_head.fc_cls.weight.clone()
    # a classifier of another class count is an error naming both shapes...
    with pytest.raises(
            CheckpointMismatchError,
            match=r'cls_head\.fc_cls\.weight: checkpoint '
            r'\(400, 192\), model \(5, 192\)'):
        load_videomamba_checkpoint(model, str(path))
    # ... unless the new head is allowed: it keeps its init
    with captured_logs() as logs:
        info = load_videomamba_checkpoint(
            model, str(path), allow_mismatch=[r'cls_head\.'])
    assert torch.equal(model.cls_head.fc_cls.weight, before)
    assert info['loaded_head'] == []
    assert any('skipped' in m and 'allow_mismatch' in m for m in logs), logs
    assert_layers_loaded(model.backbone, sd)
    # same class count: the head is loaded
    model = recognizer(400)
    info = load_videomamba_checkpoint(model, str(path))
    assert torch.equal(model.cls_head.fc_cls.weight, sd['head.weight'])
    assert torch.equal(model.cls_head.fc_cls.bias, sd['head.bias'])
    assert info['loaded_head'] == [
        'cls_head.fc_cls.weight', 'cls_head.fc_cls.bias'
    ]


def test_recognizer_init_weights_uses_pretrained(tmp_path, ssp_weights):
    """OpenMMLab flow: backbone init_cfg Pretrained + model.init_weights()."""
    sd = published(ssp_weights, VIDEO)
    path = tmp_path / 'vid.pth'
    torch.save(sd, path)
    model = recognizer(
        5, ssp=dict(), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_layers_loaded(model.backbone, sd)
    assert torch.equal(model.backbone.temporal_pos_embedding,
                       sd['temporal_pos_embedding'])


def test_wrong_shape_raises(tmp_path, ssp_weights):
    sd = published(ssp_weights, VIDEO)
    path = tmp_path / 'vid.pth'
    torch.save(sd, path)
    model = tiny(d_state=8)
    with pytest.raises(
            ValueError,
            match=r"'layers\.0\.mixer\.A_log' has shape \(384, 16\)"
            r", the model expects \(384, 8\)"):
        load_videomamba_checkpoint(model, str(path))
    # also through a plain load_state_dict (the pre-hook)
    with pytest.raises(ValueError, match='cls_token'):
        VideoMamba(
            arch='small',
            img_size=224).load_state_dict({'cls_token': sd['cls_token']},
                                          strict=False)


def test_missing_file_raises():
    model = tiny(pretrained='/nonexistent/videomamba.pth')
    with pytest.raises(FileNotFoundError, match='/nonexistent/videomamba.pth'):
        model.init_weights()


def test_unknown_keys_are_skipped_with_a_warning(tmp_path, ssp_weights):
    sd = published(ssp_weights, IMAGE)
    sd['distill_head.weight'] = torch.zeros(3)
    path = tmp_path / 'img.pth'
    torch.save({'model': sd}, path)
    model = tiny()
    with captured_logs() as logs:
        info = load_videomamba_checkpoint(model, str(path))
    assert 'distill_head.weight' in info['skipped']
    assert any('distill_head.weight' in m for m in logs)
    assert info['missing'] == ['temporal_pos_embedding']


def test_official_ssp_state_dict_loads_into_backbone(ssp_weights):
    """Official SSP names load with only the head removed (pre-hook maps
    inner_prompt.* / prompt_attentions.* / dynamic_scales.* to ssp.*)."""
    sd = ssp_weights.official_state_dict('tiny', 4, 5, 3, 64)
    model = tiny(img_size=64, num_frames=4, ssp=dict())
    model.load_state_dict(
        {
            k: v
            for k, v in sd.items() if not k.startswith('head.')
        },
        strict=True)
    assert torch.equal(model.ssp.inner_prompt.fc1.weight,
                       sd['inner_prompt.fc1.weight'])
    # an SSP checkpoint of another img_size cannot be adapted: clear error
    model = tiny(img_size=32, num_frames=4, ssp=dict())
    with pytest.raises(
            ValueError, match='inner_prompt.inter.convs.weight.*'
            'img_size'):
        model.load_state_dict(
            convert_official_ssp(
                {
                    k: v
                    for k, v in sd.items() if k.startswith('inner_prompt')
                },
                backbone_prefix=''),
            strict=False)
