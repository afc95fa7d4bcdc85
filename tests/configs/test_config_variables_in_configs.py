# Copyright (c) mmstop contributors. All rights reserved.
"""Every shipped config: its top-level variables are the one place for the
class count, frame count, image size and class-name file (overriding one
reaches every field that uses it, and no field holds a stale value), only
recipes without direction classes flip, and STOP's prompt modes switch with
``mode`` alone."""
import glob
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.models.clip.builder import resolve_clip_arch
from mmstop.models.prompts import (DynamicInterFramePrompt,
                                   TokenIntraFramePrompt,
                                   build_inter_frame_prompt,
                                   build_intra_frame_prompt)
from mmstop.registry import MODELS
from mmstop.utils import is_variable_value, parse_config, resolve_config

CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))
STOP_CONFIGS = [n for n in CONFIGS if n.startswith('stop_clip_')]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
SAMPLERS = {
    'SampleFrames': 'clip_len',
    'UniformSample': 'clip_len',
    'SegmentSampleFrames': 'num_segments',
    'SegmentViewSampleFrames': 'clip_len'
}
CROPS = ('CenterCrop', 'ThreeCrop', 'LongSideCrops')
# no class of these datasets depends on left/right
FLIPPING_DATASETS = ('ucf101', 'hmdb51', 'breakfast')


def load(name):
    return Config.fromfile(osp.join(REPO_ROOT, 'configs', name))


def transforms(cfg, loaders=LOADERS):
    """Every transform of the loaders' pipelines, nested ones included."""
    stack = [t for loader in loaders for t in cfg[loader].dataset.pipeline]
    while stack:
        t = stack.pop()
        yield t
        stack += t.get('transforms', [])


def datasets(cfg):
    return [cfg[loader].dataset for loader in LOADERS]


def test_the_configs_are_found():
    # the tests below run on every file the glob finds (the default jobs of
    # the README among them), whatever their number
    assert {'stop_clip_demo.py', 'ssp_videomamba_demo.py'} <= set(CONFIGS)
    assert 'stop_clip_demo.py' in STOP_CONFIGS


@pytest.mark.parametrize('name', CONFIGS)
def test_no_field_holds_a_stale_variable_value(name):
    """Parsing with every variable assigned its final value in every file of
    the chain changes nothing: no field was derived from a value a child
    config replaced."""
    cfg = load(name)
    variables = {
        k: v
        for k, v in cfg.to_dict().items() if is_variable_value(v)
    }
    assert {'num_frames', 'image_size'} <= set(variables)
    assert parse_config(cfg.filename, variables).to_dict() == cfg.to_dict()


@pytest.mark.parametrize('name', CONFIGS)
def test_overridden_variables_reach_every_field_that_uses_them(name):
    cfg = load(name)
    frames, size = cfg.num_frames + 1, cfg.image_size + 32
    overrides = dict(num_frames=frames, image_size=size)
    classes = 'num_classes' in cfg
    names = 'classnames_file' in cfg
    if classes:
        overrides['num_classes'] = 7
    if names:
        overrides['classnames_file'] = 'elsewhere/names.txt'
    # the motion configs name their classes for the text tower separately
    # (class_texts), in the order of classnames_file
    texts = 'class_texts' in cfg
    if texts:
        overrides['class_texts'] = [f'class {i}' for i in range(7)]
    cfg.merge_from_dict(overrides)
    cfg = resolve_config(cfg)

    backbone = cfg.model.backbone
    if backbone.type != 'CLIPFrameEncoder':  # it takes any frame count
        assert backbone.num_frames == frames
    if backbone.type in ('STOPCLIP', 'CLIPFrameEncoder'):
        assert backbone.arch.image_size == size
    else:
        assert backbone.img_size == size
    sizes = {size, cfg.get('resize_short', size)}
    assert cfg.get('resize_short', 0) != 40  # the SSP demo's, derived
    seen = set()
    for t in transforms(cfg):
        seen.add(t.type)
        if t.type in SAMPLERS:
            assert t[SAMPLERS[t.type]] == frames, t
        elif t.type in CROPS:
            assert t.crop_size == size, t
        elif t.type == 'Resize':
            assert set(t.scale) - {-1} <= sizes, t
    assert {'Resize'} <= seen and seen & set(SAMPLERS)

    if classes:
        assert cfg.model.cls_head.num_classes == 7
        blending = cfg.model.data_preprocessor.get('blending')
        for augment in (blending.augments if blending else []):
            assert augment.num_classes == 7
        assert all(ds.num_classes == 7 for ds in datasets(cfg))
    if (names or texts) and 'class_names' in cfg.model.cls_head:
        assert cfg.model.cls_head.class_names == (
            overrides['class_texts'] if texts else 'elsewhere/names.txt')
    if names:
        assert all(ds.classnames_file == 'elsewhere/names.txt'
                   for ds in datasets(cfg))


@pytest.mark.parametrize('name', CONFIGS)
def test_only_recipes_without_direction_classes_flip(name):
    cfg = load(name)
    flips = any(t.type == 'Flip'
                for t in transforms(cfg, loaders=['train_dataloader']))
    assert flips == any(d in name for d in FLIPPING_DATASETS)
    assert not any(t.type == 'Flip' for t in transforms(
        cfg, loaders=['val_dataloader', 'test_dataloader']))


@pytest.mark.parametrize('name', STOP_CONFIGS)
@pytest.mark.parametrize('kind', ['intra_prompt', 'inter_prompt'])
def test_mode_alone_switches_a_prompt_to_the_paper(name, kind):
    cfg = load(name)
    cfg.merge_from_dict({f'model.backbone.{kind}.mode': 'paper'})
    backbone = cfg.model.backbone
    arch = resolve_clip_arch(backbone.arch)
    grid = arch['image_size'] // arch['patch_size']
    with torch.device('meta'):  # the sizes STOPCLIP passes
        if kind == 'intra_prompt':
            module = build_intra_frame_prompt(
                backbone.intra_prompt,
                image_size=arch['image_size'],
                patch_size=arch['patch_size'],
                embed_dims=arch['vision_width'],
                num_patches=grid**2,
                num_layers=arch['vision_layers'])
            assert isinstance(module, TokenIntraFramePrompt)
        else:
            module = build_inter_frame_prompt(
                backbone.inter_prompt,
                embed_dims=arch['vision_width'],
                num_patches=grid**2,
                num_prompts=backbone.num_local_prompts,
                num_heads=arch['vision_heads'],
                num_frames=backbone.num_frames)
            assert isinstance(module, DynamicInterFramePrompt)


@pytest.mark.parametrize(
    'name', ['stop_clip_paper_ucf101.py', 'stop_clip_paper_demo.py'])
def test_paper_configs_build_paper_prompts(name, tmp_path):
    cfg = load(name)
    classes = tmp_path / 'classnames.txt'
    classes.write_text('a\nb\nc\n')
    cfg.model.cls_head.class_names = str(classes)
    init_default_scope('mmaction')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert isinstance(model.backbone.intra_prompt, TokenIntraFramePrompt)
    assert isinstance(model.backbone.inter_prompt, DynamicInterFramePrompt)
