# Copyright (c) mmstop contributors. All rights reserved.
"""The STOP action-recognition configs: the assumed recipe
(docs/stop.md#action-recognition-recipe-assumptions) and the full-size model
built on the meta device (official trainable count). No data, no CLIP
file."""
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.registry import MODELS

CLASSES = {'ucf101': 101, 'hmdb51': 51, 'ssv2': 174}  # of each dataset


def load(name):
    return Config.fromfile(
        osp.join(REPO_ROOT, 'configs', f'stop_clip_{name}.py'))


@pytest.fixture(params=sorted(CLASSES))
def case(request):
    name = request.param
    return name, load(name), CLASSES[name]


def test_recipe(case):
    """The MSR-VTT video encoder, optimiser, evaluation batch and global
    batch (docs/retrieval.md#1-recipes), its schedule shape (10 % linear
    warm-up, then cosine) over the recipe's epochs, class k as the sentence
    "a video of a person doing {class k}"."""
    _, cfg, _ = case
    msrvtt = load('msrvtt')
    assert cfg.model.backbone == msrvtt.model.backbone
    assert cfg.optim_wrapper == msrvtt.optim_wrapper
    assert cfg.val_dataloader.batch_size == msrvtt.val_dataloader.batch_size
    assert cfg.auto_scale_lr == msrvtt.auto_scale_lr
    assert cfg.model.cls_head.template == 'a video of a person doing {}'
    epochs = cfg.train_cfg.max_epochs
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, cosine.type) == ('LinearLR', 'CosineAnnealingLR')
    assert warmup.end == cosine.begin == pytest.approx(0.1 * epochs)
    assert cosine.end == epochs
    # the class-name file and the annotation files of one dataset
    names = cfg.model.cls_head.class_names
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        assert ds.classnames_file == names
        assert osp.dirname(ds.ann_file) == osp.dirname(names)


def test_full_model_builds_with_the_official_trainable_count(case, tmp_path):
    _, cfg, classes = case
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
