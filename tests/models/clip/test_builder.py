# Copyright (c) mmstop contributors. All rights reserved.
"""CLIP towers built from open_clip's model configs."""
import math

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from mmstop.models.clip import build_open_clip
from mmstop.models.clip.builder import resolve_clip_arch


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('arch, name', [('vit-b32', 'ViT-B-32'),
                                        ('vit-b16', 'ViT-B-16')])
def test_named_archs_are_open_clips_models(arch, name):
    """Same modules, names and shapes as open_clip's own model of that
    name with QuickGELU (built on the meta device: no memory, no init)."""
    with torch.device('meta'):
        ours = build_open_clip(arch)
        ref = open_clip.create_model(
            name, force_quick_gelu=True, device='meta')
    assert repr(ours) == repr(ref)
    assert shapes(ours) == shapes(ref)
    # the image size override reaches the vision tower
    with torch.device('meta'):
        small = build_open_clip(dict(base=arch, image_size=112))
    grid = 112 // resolve_clip_arch(arch)['patch_size']
    assert small.visual.positional_embedding.shape[0] == grid * grid + 1


def test_tiny_arch_and_overrides():
    torch.manual_seed(0)
    model = build_open_clip(dict(base='tiny', image_size=32, patch_size=8))
    assert model.visual.conv1.weight.shape == (64, 3, 8, 8)
    assert model.visual.positional_embedding.shape == (17, 64)
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    assert len(model.transformer.resblocks) == 2
    assert model.logit_scale.item() == pytest.approx(math.log(100.))
    assert sum(isinstance(m, QuickGELU) for m in model.modules()) == 4
    arch = resolve_clip_arch(dict(base='vit-b32', text_heads=4))
    assert arch['text_heads'] == 4 and arch['vision_heads'] == 12


@pytest.mark.parametrize('arch, error, match', [
    ('vit-h14', KeyError, 'unknown CLIP arch'),
    (dict(base='tiny', depth=3), KeyError, r"unknown CLIP arch key\(s\) "
     r"\['depth'\]"),
    (dict(embed_dims=8), KeyError, 'missing key'),
    (dict(base='tiny', vision_heads=3), ValueError, 'divisible'),
])
def test_bad_arch(arch, error, match):
    with pytest.raises(error, match=match):
        build_open_clip(arch)
