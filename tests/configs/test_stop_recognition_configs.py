# Copyright (c) mmstop contributors. All rights reserved.
"""The STOP action-recognition configs: recipe values (README, "Action
recognition recipe"), multi-view test pipelines, and the full-size model
built on the meta device (official trainable count). No data, no CLIP file."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.registry import MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECIPES = {  # dataset: (classes, epochs, horizontal flip, data root)
    'ucf101': (101, 30, True, 'data/ucf101/'),
    'hmdb51': (51, 30, True, 'data/hmdb51/'),
    'ssv2': (174, 10, False, 'data/sthv2/'),
}


@pytest.fixture(params=sorted(RECIPES))
def case(request):
    name = request.param
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                   f'stop_clip_{name}.py'))
    return name, cfg, RECIPES[name]


def test_recipe(case):
    name, cfg, (_, epochs, flip, root) = case
    assert cfg.default_scope == 'mmaction'
    assert cfg.custom_imports.imports == ['mmstop']
    model = cfg.model
    assert model.type == 'STOPRecognizer'
    bb = model.backbone
    assert (bb.arch, bb.num_frames, bb.prompt_generator, bb.pool) == (
        dict(base='vit-b32', image_size=224), 12, 'transformer', 'global0')
    assert bb.intra_prompt.mode == bb.inter_prompt.mode == 'official'
    assert bb.pretrained == 'data/pretrained/ViT-B-32.pt'
    head = model.cls_head
    assert head.type == 'TextClassifierHead'
    assert head.template == 'a video of a person doing {}'
    assert head.class_names == root + 'classnames.txt'
    assert model.data_preprocessor.format_shape == 'NCTHW'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.train_cfg.max_epochs == epochs
    # warm-up over the first 10 % of the epochs, then cosine to the end
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == pytest.approx(0.1 * epochs)
    assert cosine.end == epochs
    train = cfg.train_dataloader.dataset
    assert train.type == 'VideoClsDataset'
    assert train.ann_file.startswith(root)
    assert train.classnames_file == head.class_names
    assert ('Flip' in [t.type for t in train.pipeline]) == flip
    # fixed evaluation batch: official-mode features depend on the batch
    assert cfg.val_dataloader.batch_size == 16
    test = [t.type for t in cfg.test_dataloader.dataset.pipeline]
    assert 'ThreeCrop' in test
    sampler = cfg.test_dataloader.dataset.pipeline[1]
    assert (sampler.type, sampler.num_clips, sampler.clip_len) == (
        'UniformSample', 2, 12)


def test_full_model_builds_with_the_official_trainable_count(case, tmp_path):
    _, cfg, (classes, *_) = case
    names = tmp_path / 'classnames.txt'
    names.write_text('\n'.join(f'class {i}' for i in range(classes)) + '\n')
    cfg.model.cls_head.class_names = str(names)
    init_default_scope('mmaction')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.cls_head.num_classes == classes
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sum(p.numel() for p in model.parameters()
               if p.requires_grad) == 13_081_528
    assert not any(n.startswith('backbone.clip.') for n in trainable)
