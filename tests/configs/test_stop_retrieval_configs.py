# Copyright (c) mmstop contributors. All rights reserved.
"""The STOP retrieval configs: recipe values (docs/retrieval.md#1-recipes),
the full-size model built on the meta device (trainable-parameter counts of
docs/stop.md#trainable-parameters), the learning-rate schedule against the
official formula, and the data pipelines plus a loss / predict step of the
same composition at a small width on the demo videos. The CLIP file is never
loaded."""
import copy
import math
import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from helpers import SMALL_PIXELS as SMALL
from helpers import build_small_dataset
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmstop.datasets import generate_demo_dataset
from mmstop.registry import MODELS, PARAM_SCHEDULERS

# docs/retrieval.md#1-recipes (DiDeMo: no official script, assumed =
# ActivityNet) and docs/stop.md#trainable-parameters (transformer 13,081,528
# at T = 12, linear 4,333,752 for any T)
RECIPES = {
    'msrvtt':
    dict(
        frames=12,
        words=32,
        generator='transformer',
        batch=32,
        gpus=4,
        epochs=5,
        lr=1e-3,
        train_sampling_test=False,
        paragraph=False,
        train_captions='unfold',
        v2t='caption',
        trainable=13_081_528),
    'activitynet':
    dict(
        frames=64,
        words=64,
        generator='linear',
        batch=16,
        gpus=8,
        epochs=10,
        lr=1e-3,
        train_sampling_test=False,
        paragraph=True,
        train_captions=None,
        v2t='caption',
        trainable=4_333_752),
    'didemo':
    dict(
        frames=64,
        words=64,
        generator='linear',
        batch=16,
        gpus=8,
        epochs=10,
        lr=1e-3,
        train_sampling_test=False,
        paragraph=True,
        train_captions=None,
        v2t='caption',
        trainable=4_333_752),
    'vatex':
    dict(
        frames=12,
        words=32,
        generator='linear',
        batch=64,
        gpus=8,
        epochs=10,
        lr=5e-3,
        train_sampling_test=True,
        paragraph=False,
        train_captions='unfold',
        v2t='group',
        trainable=4_333_752),
}
# CLIP normalisation, in 0-255 pixel units
CLIP_MEAN = [255 * m for m in OPENAI_DATASET_MEAN]
CLIP_STD = [255 * s for s in OPENAI_DATASET_STD]


def config_path(name):
    return osp.join(REPO_ROOT, 'configs', f'stop_clip_{name}.py')


@pytest.fixture(scope='module', autouse=True)
def _scope_and_threads(one_thread):  # many small ops: tests/conftest.py
    init_default_scope('mmaction')


@pytest.fixture(scope='module', params=sorted(RECIPES))
def case(request):
    name = request.param
    return name, Config.fromfile(config_path(name)), RECIPES[name]


def sampler_step(pipeline):
    return [t for t in pipeline if t.type == 'SegmentSampleFrames'][0]


# --------------------------------------------------------------------------
# recipe values
# --------------------------------------------------------------------------
def test_recipe_values(case):
    name, cfg, r = case
    model = cfg.model
    assert model.gather_grad == 'local'
    bb = model.backbone
    assert (bb.arch, bb.num_frames, bb.prompt_generator,
            bb.pool) == (dict(base='vit-b32', image_size=224), r['frames'],
                         r['generator'], 'global0')
    assert bb.intra_prompt.mode == bb.inter_prompt.mode == 'official'
    pre = model.data_preprocessor
    assert pre.mean == pytest.approx(CLIP_MEAN, rel=1e-8)
    assert pre.std == pytest.approx(CLIP_STD, rel=1e-8)

    opt = cfg.optim_wrapper
    assert opt.optimizer == dict(
        type='AdamW',
        lr=r['lr'],
        betas=(0.9, 0.98),
        eps=1e-6,
        weight_decay=0.2)
    assert opt.paramwise_cfg == dict(bias_decay_mult=0.0)
    assert opt.clip_grad == dict(max_norm=1.0, norm_type=2)
    assert cfg.train_cfg.max_epochs == r['epochs']
    assert cfg.train_cfg.val_interval == 1  # official: test every epoch
    assert cfg.default_hooks.checkpoint.save_best == 'retrieval/t2v/R@1'
    assert cfg.auto_scale_lr.base_batch_size == r['batch'] * r['gpus']

    train = cfg.train_dataloader
    assert train.batch_size == r['batch'] and train.sampler.shuffle
    ds = train.dataset
    assert ds.get('caption_mode') == r['train_captions']
    assert ds.get('paragraph', False) == r['paragraph']
    assert sampler_step(ds.pipeline).test_mode == r['train_sampling_test']
    for loader in ('val_dataloader', 'test_dataloader'):
        dl = cfg[loader]
        # fixed evaluation batch: official-mode features depend on it
        assert dl.batch_size == 16 and not dl.sampler.shuffle
        assert dl.dataset.caption_mode == 'all' and dl.dataset.test_mode
        assert dl.dataset.get('paragraph', False) == r['paragraph']
        assert sampler_step(dl.dataset.pipeline).test_mode
    for dl in (train, cfg.val_dataloader, cfg.test_dataloader):
        # the annotations and the videos of one dataset
        root = osp.dirname(train.dataset.data_prefix.video) + '/'
        assert dl.dataset.ann_file.startswith(root)
        assert dl.dataset.data_prefix.video.startswith(root)
        # short side 224, centre crop 224, T segments, the word count
        steps = {t.type: t for t in dl.dataset.pipeline}
        assert sampler_step(dl.dataset.pipeline).num_segments == r['frames']
        assert steps['Resize'].scale == (-1, 224)
        assert steps['CenterCrop'].crop_size == 224
        assert steps['TokenizeText'].context_length == r['words']
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.get('v2t_mode', 'caption') == r['v2t']


def test_lr_schedule_is_the_official_one(case):
    """10 % linear warm-up from 1e-8, then per-iteration cosine, floored at
    1e-8 (official utils/lr_scheduler.py with global_step = iteration).

    One known offset: MMEngine's ``LinearLR`` reaches the peak at iteration
    ``warm - 1``, the official warm-up at ``warm`` (slope ``1 / (warm - 1)``
    instead of ``1 / warm``: 0.14 % at MSR-VTT's 703 warm-up iterations).
    From iteration ``warm`` on the two schedules coincide.
    """
    _, cfg, r = case
    iters = 20  # per epoch
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [
        PARAM_SCHEDULERS.build(
            dict(copy.deepcopy(s), optimizer=optimizer, epoch_length=iters))
        for s in cfg.param_scheduler
    ]
    total = r['epochs'] * iters
    warm = round(0.1 * total)
    lrs, official = [], []
    for step in range(total):
        lrs.append(optimizer.param_groups[0]['lr'])
        if step <= warm:
            lr = min(step / warm * (r['lr'] - 1e-8) + 1e-8, r['lr'])
        else:
            lr = 0.5 * r['lr'] * (1 + math.cos(
                (step - warm) / (total - warm) * math.pi))
        official.append(max(lr, 1e-8))
        optimizer.step()
        for s in schedulers:
            s.step()
    # MMEngine's cosine is eta_min + (lr - eta_min)(1 + cos)/2: within 1e-8
    assert lrs[warm:] == pytest.approx(official[warm:], rel=1e-6, abs=1e-8)
    assert lrs[0] == official[0] == pytest.approx(1e-8)
    mmengine_warmup = [
        1e-8 + (r['lr'] - 1e-8) * step / (warm - 1) for step in range(warm)
    ]
    assert lrs[:warm] == pytest.approx(mmengine_warmup, rel=1e-6)


# --------------------------------------------------------------------------
# the full-size model, on the meta device (no memory, no CLIP file)
# --------------------------------------------------------------------------
def test_builds_full_model(case):
    name, cfg, r = case
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    bb = model.backbone
    assert bb.num_frames == r['frames'] and bb.image_size == 224
    assert bb.clip.visual.conv1.weight.shape == (768, 3, 32, 32)
    assert bb.prompt_generator.mode == r['generator']
    assert bb.inter_prompt.normalize == 'batch'  # official, by default
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == r['trainable']
    assert not any(k.startswith('backbone.clip.') for k in trainable)
    assert not bb.clip.logit_scale.requires_grad
    assert model.batch_dependent  # hence the fixed evaluation batch


def test_demo_config_is_the_msrvtt_recipe_on_a_tiny_clip():
    """The CPU demo differs from MSR-VTT's model only in the sizes (CLIP
    architecture, frames, intra-prompt kernels) and the checkpoint (none),
    and samples captions as MSR-VTT does."""
    demo, msrvtt = (
        Config.fromfile(config_path(n)).to_dict()
        for n in ('retrieval_demo', 'msrvtt'))
    sizes = ('arch', 'num_frames', 'pretrained')
    for cfg in (demo, msrvtt):
        for key in sizes:
            cfg['model']['backbone'].pop(key)
        for key in ('kernel_size', 'scorer_kernel_size'):
            cfg['model']['backbone']['intra_prompt'].pop(key, None)
    assert demo['model'] == msrvtt['model']
    for loader in ('train_dataloader', 'test_dataloader'):
        assert (demo[loader]['dataset']['caption_mode'] == msrvtt[loader]
                ['dataset']['caption_mode'])
    MODELS.build(Config.fromfile(config_path('retrieval_demo')).model)


# --------------------------------------------------------------------------
# data pipelines and a loss / predict step of the same composition, small
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=2,
        train_per_class=1,
        val_per_class=1,
        seed=0)


def build_dataset(cfg, loader, demo):
    split = 'train' if loader == 'train_dataloader' else 'val'
    return build_small_dataset(cfg, loader, demo[f'captions_{split}'],
                               demo['video_dir'])


def test_pipelines_and_model_step(case, demo):
    name, cfg, r = case
    t, words = r['frames'], r['words']
    train = build_dataset(cfg, 'train_dataloader', demo)
    test = build_dataset(cfg, 'test_dataloader', demo)
    train_batch = [train[i] for i in range(2)]
    test_batch = [test[i] for i in range(2)]
    for s in train_batch + test_batch:
        assert s['inputs'].shape == (t, 3, SMALL, SMALL)
    for s in train_batch:
        assert s['data_samples'].text_ids.shape == (1, words)
    n_captions = [s['data_samples'].text_ids.shape[0] for s in test_batch]
    if r['paragraph']:
        assert n_captions == [1, 1]
    else:
        assert min(n_captions) >= 2  # every demo caption is a query

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(
        arch=dict(base='tiny', image_size=SMALL, patch_size=8),
        pretrained=None,
        intra_prompt=dict(
            model_cfg.backbone.intra_prompt,
            kernel_size=(3, 3, 3),
            scorer_kernel_size=(3, 3, 3)),
        inter_prompt=dict(
            model_cfg.backbone.inter_prompt,
            kernel_size=(3, 3, 3),
            scorer_kernel_size=(3, 3, 3)))
    model = MODELS.build(model_cfg)
    model.train()
    data = model.data_preprocessor(pseudo_collate(train_batch), True)
    assert data['inputs'].shape == (2, t, 3, SMALL, SMALL)
    # (the backward is covered by tests/models/similarity; at 64 frames it
    # would double this test's time)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss_sim'])
    assert losses['loss_sim'].requires_grad
    model.eval()
    data = model.data_preprocessor(pseudo_collate(test_batch), False)
    with torch.no_grad():
        out = model(**data, mode='predict')
    for d, n in zip(out, n_captions):
        assert d.video_feature.shape == (64, )
        assert d.text_feature.shape == (n, 64)
