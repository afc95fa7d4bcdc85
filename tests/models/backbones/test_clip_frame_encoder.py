# Copyright (c) mmstop contributors. All rights reserved.
"""CLIPFrameEncoder: frozen CLIP per frame, the STOP baselines' backbone."""
import pytest
import torch
import torch.nn.functional as F

from mmstop.models.backbones import CLIPFrameEncoder
from mmstop.models.clip import build_open_clip
from mmstop.registry import MODELS

ARCH = dict(
    base='tiny',
    image_size=32,
    patch_size=8,
    vocab_size=512,
    context_length=16)


def test_video_feature_is_the_mean_of_normalised_frame_features():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='CLIPFrameEncoder', arch=ARCH)).eval()
    clips = torch.randn(2, 3, 4, 32, 32)  # NCTHW
    out = model(clips)
    assert out.shape == (2, 64)
    frames = clips.transpose(1, 2).reshape(8, 3, 32, 32)
    expected = F.normalize(model.clip.encode_image(frames), dim=-1)
    torch.testing.assert_close(out, expected.reshape(2, 4, 64).mean(1))
    raw = CLIPFrameEncoder(ARCH, normalize=False)
    raw.load_state_dict(model.state_dict())
    torch.testing.assert_close(
        raw(clips),
        model.clip.encode_image(frames).reshape(2, 4, 64).mean(1))
    with pytest.raises(ValueError, match=r'\[N, C, T, H, W\]'):
        model(torch.randn(2, 3, 32, 32))


def test_frozen_and_text_interface():
    model = CLIPFrameEncoder(ARCH)
    assert not [n for n, p in model.named_parameters() if p.requires_grad]
    model.train()
    assert not model.clip.training
    ids = torch.zeros(3, 10, dtype=torch.long)
    ids[:, 0], ids[:, 1:4] = 510, torch.tensor([5, 6, 7])
    ids[:, 4] = 511
    padded = F.pad(ids, (0, 6))
    torch.testing.assert_close(
        model.encode_text(ids), model.clip.encode_text(padded))
    assert model.logit_scale is model.clip.logit_scale
    with pytest.raises(ValueError, match='L <= 16'):
        model.encode_text(torch.zeros(1, 17, dtype=torch.long))
    assert all(
        p.requires_grad
        for p in CLIPFrameEncoder(ARCH, freeze=False).parameters())


def test_pretrained_goes_through_the_clip_loader(tmp_path):
    source = build_open_clip(ARCH)
    path = str(tmp_path / 'clip.pth')
    torch.save({k: v.half() for k, v in source.state_dict().items()}, path)
    model = CLIPFrameEncoder(ARCH, pretrained=path)
    model.init_weights()
    torch.testing.assert_close(model.clip.visual.proj,
                               source.visual.proj.half().float())
    wrong = CLIPFrameEncoder(
        dict(ARCH, vision_width=32, vision_heads=2), pretrained=path)
    with pytest.raises(ValueError, match='shape mismatch'):
        wrong.init_weights()
