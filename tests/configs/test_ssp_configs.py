# Copyright (c) mmstop contributors. All rights reserved.
"""The SSP VideoMamba-M configs: official recipe values
(docs/ssp.md#training-recipe),
full-size model build, optimiser groups, LR schedule, data pipelines and a
training step of the same composition at a small width."""
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
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD

from mmstop.datasets import generate_demo_dataset
from mmstop.registry import MODELS, PARAM_SCHEDULERS

# the official scripts (docs/ssp.md#training-recipe, the config headers) and
# the parameter counts (docs/ssp.md#trainable-parameters)
RECIPES = {
    'ucf101':
    dict(
        classes=101,
        frames=8,
        epochs=10,
        lr=1.25e-3,
        warmup_lr=2.5e-7,
        min_lr=2.5e-7,
        batch=8,
        accum=1,
        views=4 * 3,
        flip=True,
        ckpt='f8',
        head_norm=58_853,
        diff_rank_seed=False),
    'hmdb51':
    dict(
        classes=51,
        frames=8,
        epochs=10,
        lr=7.5e-4,
        warmup_lr=2.5e-7,
        min_lr=2.5e-7,
        batch=8,
        accum=1,
        views=8 * 3,
        flip=True,
        ckpt='f8',
        head_norm=30_003,
        diff_rank_seed=True),
    'ssv2':
    dict(
        classes=174,
        frames=8,
        epochs=7,
        lr=8e-4,
        warmup_lr=4e-6,
        min_lr=4e-6,
        batch=8,
        accum=16,
        views=2 * 9,
        flip=False,
        ckpt='f8',
        head_norm=100_974,
        diff_rank_seed=True),
    'breakfast':
    dict(
        classes=10,
        frames=32,
        epochs=20,
        lr=5e-4,
        warmup_lr=5e-7,
        min_lr=5e-7,
        batch=2,
        accum=8,
        views=8 * 6,
        flip=True,
        ckpt='f32',
        head_norm=6_346,
        diff_rank_seed=True),
}
SSP_PARAMS = 2_418_274  # middle, P = 3
BACKBONE_PARAMS_8F = 73_644_480  # middle without SSP/norm_f, 8 frames
WARMUP_EPOCHS = 5


def config_path(name):
    return osp.join(REPO_ROOT, 'configs', f'ssp_videomamba_m16_{name}.py')


@pytest.fixture(scope='module', autouse=True)
def _scope_and_threads(one_thread):  # many small ops: tests/conftest.py
    init_default_scope('mmaction')


@pytest.fixture(scope='module', params=sorted(RECIPES))
def case(request):
    name = request.param
    return name, Config.fromfile(config_path(name)), RECIPES[name]


# --------------------------------------------------------------------------
# recipe values
# --------------------------------------------------------------------------
def test_recipe_values(case):
    name, cfg, r = case
    bb = cfg.model.backbone
    assert (bb.arch, bb.img_size, bb.patch_size, bb.tubelet_size,
            bb.drop_path_rate) == ('middle', 224, 16, 1, 0.4)
    assert bb.num_frames == r['frames']
    assert bb.ssp.num_prompts == 3 and bb.freeze_backbone
    assert osp.basename(bb.pretrained) == osp.basename(
        cfg.pretrained_checkpoint) == (
            f'videomamba_m16_k400_mask_ft_{r["ckpt"]}_res224.pth')
    head = cfg.model.cls_head
    assert (head.num_classes, head.in_channels, head.label_smooth_eps,
            head.average_clips) == (r['classes'], 576, 0.1, 'prob')
    pre = cfg.model.data_preprocessor
    # ImageNet normalisation, in 0-255 pixel units
    assert pre.mean == pytest.approx([255 * m for m in IMAGENET_MEAN])
    assert pre.std == pytest.approx([255 * s for s in IMAGENET_STD])
    blend = pre.blending
    assert blend.probs == [0.5, 0.5]
    assert [(a.type, a.alpha, a.num_classes)
            for a in blend.augments] == [('MixupBlending', 0.8, r['classes']),
                                         ('CutmixBlending', 1.0, r['classes'])]

    opt = cfg.optim_wrapper
    assert (opt.type, opt.dtype) == ('AmpOptimWrapper', 'bfloat16')
    assert opt.optimizer == dict(
        type='AdamW',
        lr=r['lr'],
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.05)
    assert opt.accumulative_counts == r['accum']
    assert 'clip_grad' not in opt
    assert cfg.train_cfg.max_epochs == r['epochs']
    assert cfg.train_dataloader.batch_size == r['batch']
    assert cfg.train_dataloader.drop_last
    assert cfg.train_dataloader.collate_fn.type == 'repeat_pseudo_collate'
    # official actual lr = base lr * batch * update_freq * 4 GPUs * 2 / 256
    clips = r['batch'] * r['accum'] * 4 * 2
    assert r['lr'] * 256 / clips in (5e-3, 3e-3, 2e-4, 1e-3)
    assert cfg.randomness == dict(seed=0, diff_rank_seed=r['diff_rank_seed'])
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        assert ds.num_classes == r['classes']
        # the annotations and the videos of one dataset
        root = osp.dirname(cfg.train_dataloader.dataset.data_prefix.video)
        assert ds.ann_file.startswith(root + '/')
        assert ds.data_prefix.video.startswith(root + '/')

    augment = cfg.train_dataloader.dataset.pipeline[-1]
    assert augment.type == 'RepeatedAugment' and augment.num_repeats == 2
    types = [t.type for t in augment.transforms]
    assert types[:3] == ['TorchVisionWrapper', 'RandomResizedCrop', 'Resize']
    assert ('Flip' in types) == r['flip']
    erase = augment.transforms[types.index('RandomErasing')]
    assert erase.erase_prob == 0.25 and erase.mode == 'rand'


def test_lr_schedule(case):
    """Warm-up from warmup_lr to the peak over 5 epochs, then per-iteration
    cosine to min_lr (docs/ssp.md#training-recipe)."""
    _, cfg, r = case
    iters = 8  # per epoch
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [
        PARAM_SCHEDULERS.build(
            dict(copy.deepcopy(s), optimizer=optimizer, epoch_length=iters))
        for s in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(r['epochs'] * iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for s in schedulers:
            s.step()
    # official utils.cosine_scheduler: np.linspace(warmup_lr, lr, warm)
    # for the warm-up iterations, then min + (lr - min)(1 + cos(pi i / n))
    # / 2 for i = 0..n-1
    warm = WARMUP_EPOCHS * iters
    n = (r['epochs'] - WARMUP_EPOCHS) * iters
    expected = [
        r['warmup_lr'] + (r['lr'] - r['warmup_lr']) * i / (warm - 1)
        for i in range(warm)
    ] + [
        r['min_lr'] + 0.5 * (r['lr'] - r['min_lr']) *
        (1 + math.cos(math.pi * i / n)) for i in range(n)
    ]
    assert lrs == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------
# the full-size model
# --------------------------------------------------------------------------
def official_no_decay(name, param):
    """main_video.py get_parameter_groups: 1-D, '.bias', pos/cls tokens."""
    short = name.split('.')[-1]
    return (param.ndim == 1 or name.endswith('.bias')
            or short in ('pos_embed', 'cls_token', 'temporal_pos_embedding'))


def test_builds_full_model(case):
    name, cfg, r = case
    model = MODELS.build(cfg.model)
    params = dict(model.named_parameters())
    trainable = {k: p for k, p in params.items() if p.requires_grad}
    assert all(
        k.startswith(('backbone.ssp.', 'backbone.norm_f.', 'cls_head.'))
        for k in trainable)
    n_trainable = sum(p.numel() for p in trainable.values())
    assert n_trainable == SSP_PARAMS + r['head_norm']
    # middle backbone, the temporal embedding grows with the frames
    n_total = sum(p.numel() for p in params.values())
    assert n_total == (
        BACKBONE_PARAMS_8F + 576 * (r['frames'] - 8) + SSP_PARAMS +
        r['head_norm'])

    # optimiser groups (fp32 OptimWrapper: AmpOptimWrapper needs a GPU)
    opt_cfg = copy.deepcopy(cfg.optim_wrapper)
    for key in ('dtype', 'loss_scale'):
        opt_cfg.pop(key)
    opt_cfg.type = 'OptimWrapper'
    optimizer = build_optim_wrapper(model, opt_cfg).optimizer
    wd = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            wd[id(p)] = group['weight_decay']
    for k, p in trainable.items():
        assert wd[id(p)] == (0.0 if official_no_decay(k, p) else 0.05), k
    assert {wd[id(p)] for p in trainable.values()} == {0.0, 0.05}

    # the K400 checkpoint is a config field; without the file the backbone
    # init fails with a message naming it
    path = cfg.model.backbone.pretrained
    if not osp.exists(path):
        with pytest.raises(FileNotFoundError, match=osp.basename(path)):
            model.backbone.init_weights()


# --------------------------------------------------------------------------
# data pipelines and one training step of the same composition, small
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=4,
        train_per_class=1,
        val_per_class=1,
        seed=0)


def build_dataset(cfg, loader, demo):
    ann = demo['train_ann' if loader == 'train_dataloader' else 'val_ann']
    return build_small_dataset(cfg, loader, ann, demo['video_dir'])


def test_pipelines_and_train_step(case, demo):
    name, cfg, r = case
    t = r['frames']
    train = build_dataset(cfg, 'train_dataloader', demo)
    sample = train[0]
    assert isinstance(sample, list) and len(sample) == 2  # 2 repeats
    for s in sample:
        assert s['inputs'].shape == (1, 3, t, SMALL, SMALL)
    val = build_dataset(cfg, 'val_dataloader', demo)[0]
    assert val['inputs'].shape == (1, 3, t, SMALL, SMALL)
    test = build_dataset(cfg, 'test_dataloader', demo)[0]
    assert test['inputs'].shape == (r['views'], 3, t, SMALL, SMALL)

    # the config's model at a small width: preprocessing with mixup/cutmix,
    # label-smoothed soft-target loss, and every trainable tensor in the
    # graph (find_unused_parameters=False)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(
        arch=dict(embed_dims=32, depth=2),
        img_size=SMALL,
        patch_size=16,
        pretrained=None,
        ssp=dict(
            model_cfg.backbone.ssp, hidden_dims=16, attn_dims=16, num_heads=2))
    model_cfg.cls_head.in_channels = 32
    model = MODELS.build(model_cfg)
    with torch.no_grad():  # leave the zero init so every tensor gets grad
        for p in model.backbone.ssp.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.train()
    batch = pseudo_collate(sample + train[1] + train[2])
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'].shape == (6, 1, 3, t, SMALL, SMALL)
    soft = [d.gt_label for d in data['data_samples']]
    assert all(s.shape == (r['classes'], ) for s in soft)
    assert all(float(s.sum()) == pytest.approx(1.0) for s in soft)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [
        k for k, p in model.named_parameters()
        if p.requires_grad and p.grad is None
    ]
    assert not missing
