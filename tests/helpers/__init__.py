# Copyright (c) mmstop contributors. All rights reserved.
"""What several test modules share: the repository root, the golden-data
comparison and its tolerances, and the tiny STOP models.

``tests/`` is on ``sys.path`` (pytest puts the directory of the rootdir
``tests/conftest.py`` there), so a test module imports ``from helpers import
...``; the selective-scan inputs are in :mod:`helpers.scan` and STOPCLIP in
the official code's layouts in :mod:`helpers.stop`.
"""
import os.path as osp

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# --------------------------------------------------------------------------
# golden-data tolerances (docs/parity.md)
# --------------------------------------------------------------------------
# SSP and the selective scan: max abs error <= REL_TOL * max |expected|
# (docs/parity.md#ssp-tolerances)
REL_TOL = 2e-5
# STOP, float32: atol per tensor with rtol=0 (docs/parity.md#stop-tolerances)
STOP_TOL32 = {
    'prompted_pixels': 1e-5,
    'prompted_pixels_v0': 1e-5,
    'prompted_pixels_s4': 1e-5,
    'prompted_pixels_s8': 1e-5,
    'mask_pooled': 2e-6,
    'h0': 1e-4,
    'inter_attn': 5e-5,
    'w_raw': 2e-7,
    'w': 1e-5,
    'inter_prompt': 5e-5,
    'TP': 2e-5,
    'VP': 2e-5,
    'vis_global_layers': 1e-4,
    'vis_cls_layers': 1e-4,
    'txt_eot_layers': 1e-4,
    'video_feature': 5e-5,
    'text_feature': 5e-5,
    'sim': 1e-4,
    'logit_scale_exp': 1e-5
}
# STOP, float64: atol for every tensor
STOP_TOL64 = 1e-10


def assert_rel_close(actual, expected, what='', rel=REL_TOL):
    """Assert ``|actual - expected|.max() <= rel * |expected|.max()`` (the
    golden data's recipe, docs/parity.md#ssp-tolerances) and equal shapes.

    Returns:
        float: The relative error ``|actual - expected|.max() /
        |expected|.max()``.
    """
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = (actual.double() - expected.double()).abs().max().item()
    scale = max(expected.double().abs().max().item(), 1e-30)
    assert err <= rel * scale, f'{what}: {err:.3e} > {rel} * {scale:.3e}'
    return err / scale


# --------------------------------------------------------------------------
# tiny STOP models (random 2-layer CLIP, nothing downloaded)
# --------------------------------------------------------------------------
TINY_FRAMES = 4
TINY_IMAGE = 32
TINY_WIDTH = 64  # embed_dims of the tiny CLIP (both towers)
# 32 px frames, 8 px patches (4x4 grid)
TINY_ARCH = dict(base='tiny', image_size=TINY_IMAGE, patch_size=8)
# the same with a 512-token vocabulary and 16-token texts (hand-written ids)
TINY_ARCH_SHORT_TEXT = dict(TINY_ARCH, vocab_size=512, context_length=16)
# the official prompt modules with 3x3x3 kernels (their CPU conv backward
# is slow at the official sizes; the parity tests cover those)
SMALL_KERNELS = dict(kernel_size=(3, 3, 3), scorer_kernel_size=(3, 3, 3))


def tiny_stop_backbone(intra_prompt=None, inter_prompt=None, **kwargs):
    """Config of a tiny official-mode ``STOPCLIP``; ``intra_prompt`` /
    ``inter_prompt`` update the small-kernel prompt configs."""
    return dict(
        type='STOPCLIP',
        arch=dict(TINY_ARCH),
        num_frames=TINY_FRAMES,
        intra_prompt=dict(SMALL_KERNELS, **(intra_prompt or {})),
        inter_prompt=dict(SMALL_KERNELS, **(inter_prompt or {})),
        **kwargs)


def build_model(cfg, seed=0):
    """``MODELS.build(cfg)`` in the mmaction scope, after
    ``torch.manual_seed(seed)`` unless ``seed`` is None."""
    from mmengine.registry import init_default_scope

    import mmstop  # noqa: F401  (registers the modules)
    from mmstop.registry import MODELS
    init_default_scope('mmaction')
    if seed is not None:
        torch.manual_seed(seed)
    return MODELS.build(cfg)


def tiny_stop_similarity(intra_prompt=None, inter_prompt=None, **kwargs):
    """A tiny ``STOPSimilarity`` (retrieval), seed 0; ``kwargs`` go to the
    model config."""
    return build_model(
        dict(
            type='STOPSimilarity',
            backbone=tiny_stop_backbone(intra_prompt, inter_prompt),
            data_preprocessor=dict(
                type='ActionDataPreprocessor', format_shape='NCHW'),
            **kwargs))


# --------------------------------------------------------------------------
# a recipe's data pipeline at a CPU-test size
# --------------------------------------------------------------------------
SMALL_PIXELS = 32  # instead of the recipes' 224


def shrink_pixels(obj, size=224, small=SMALL_PIXELS):
    """``obj`` (config dicts / lists) with every ``size`` replaced by
    ``small``."""
    if isinstance(obj, dict):
        return {k: shrink_pixels(v, size, small) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(shrink_pixels(v, size, small) for v in obj)
    return small if obj == size and not isinstance(obj, bool) else obj


def build_small_dataset(cfg, loader, ann_file, video_dir):
    """The dataset of ``cfg[loader]`` on ``ann_file`` and the videos of
    ``video_dir``, every 224-pixel size of its pipeline ``SMALL_PIXELS``."""
    import copy

    from mmstop.registry import DATASETS
    ds = copy.deepcopy(cfg[loader].dataset.to_dict())
    ds.update(ann_file=ann_file, data_prefix=dict(video=video_dir))
    ds['pipeline'] = shrink_pixels(ds['pipeline'])
    return DATASETS.build(ds)


# --------------------------------------------------------------------------
# VideoMamba + SSP
# --------------------------------------------------------------------------
def ssp_recognizer(arch,
                   img_size,
                   num_frames,
                   num_classes,
                   ssp=None,
                   **backbone_kwargs):
    """An MMAction2 ``Recognizer3D``: ``VideoMamba`` (+ SSP) and a
    ``TimeSformerHead``, the layout of the official SSP model (random
    weights; the global RNG is not reseeded)."""
    embed_dims = (
        arch['embed_dims'] if isinstance(arch, dict) else dict(
            tiny=192, small=384, middle=576)[arch])
    return build_model(
        dict(
            type='Recognizer3D',
            backbone=dict(
                type='VideoMamba',
                arch=arch,
                img_size=img_size,
                num_frames=num_frames,
                ssp=ssp,
                **backbone_kwargs),
            cls_head=dict(
                type='TimeSformerHead',
                num_classes=num_classes,
                in_channels=embed_dims)),
        seed=None)
