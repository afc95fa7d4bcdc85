# Copyright (c) mmstop contributors. All rights reserved.
"""CLIP checkpoints in the published formats, and clear errors for bad ones."""
import pytest
import torch
from open_clip.transformer import QuickGELU

from mmstop.models.backbones import STOPCLIP
from mmstop.models.clip import build_open_clip, read_clip_checkpoint

ARCH = dict(base='tiny', image_size=32, patch_size=8)


def source_clip():
    torch.manual_seed(3)
    model = build_open_clip(ARCH).eval()
    with torch.no_grad():
        model.logit_scale.fill_(4.5)
    return model


def stop(pretrained):
    return STOPCLIP(
        arch=ARCH,
        num_frames=2,
        pretrained=str(pretrained),
        intra_prompt=None,
        inter_prompt=None)


def openai_style_archive(model, path):
    """Trace like OpenAI's released JIT models and save the archive."""
    images = torch.ones(1, 3, 32, 32)
    text = torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace_module(
        model,
        dict(
            forward=(images, text),
            encode_text=(text, ),
            encode_image=(images, )),
        check_trace=False)
    torch.jit.save(traced, str(path))


def assert_same_clip(model, reference, atol=0.0):
    ref = reference.state_dict()
    own = model.clip.state_dict()
    assert own.keys() == ref.keys()
    for key, value in ref.items():
        torch.testing.assert_close(
            own[key], value.float(), rtol=0, atol=atol, msg=key)


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
@pytest.mark.filterwarnings('ignore:`torch.jit.*` is deprecated:FutureWarning')
def test_openai_torchscript_archive_loads_with_quickgelu(tmp_path):
    """OpenAI's .pt files are TorchScript archives with fp16 weights."""
    src = source_clip()
    half = source_clip()
    for module in half.modules():  # OpenAI converts Linear/Conv weights
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.half().float()  # round like fp16 storage, keep fp32 math
    path = tmp_path / 'ViT-tiny.pt'
    openai_style_archive(half, path)
    state = read_clip_checkpoint(str(path))
    assert 'visual.conv1.weight' in state
    model = stop(path)
    model.init_weights()
    assert_same_clip(model, half)
    # the fp16 rounding came through
    assert not torch.equal(model.clip.visual.conv1.weight,
                           src.visual.conv1.weight)
    acts = [m for m in model.clip.modules() if isinstance(m, QuickGELU)]
    assert len(acts) == 2 * 2  # every block of both 2-layer towers


@pytest.mark.parametrize('wrap', ['plain', 'state_dict', 'module'])
def test_state_dict_files(tmp_path, wrap):
    src = source_clip()
    state = src.state_dict()
    if wrap == 'state_dict':
        state = {'state_dict': state}
    elif wrap == 'module':
        state = {'module.' + k: v for k, v in state.items()}
        # bookkeeping entries of OpenAI state dicts are ignored
        state['module.input_resolution'] = torch.tensor(32)
        state['module.context_length'] = torch.tensor(77)
    path = tmp_path / f'{wrap}.pth'
    torch.save(state, path)
    model = stop(path)
    model.init_weights()
    assert_same_clip(model, src)
    assert model.logit_scale.item() == pytest.approx(4.5)


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / 'nowhere' / 'ViT-B-32.pt'
    model = stop(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        model.init_weights()


def test_wrong_shape_names_the_key(tmp_path):
    other = build_open_clip(dict(ARCH, text_width=32, text_heads=2))
    path = tmp_path / 'other_arch.pth'
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError) as err:
        stop(path).init_weights()
    msg = str(err.value)
    assert 'other_arch.pth' in msg and 'shape mismatch' in msg
    assert 'expected (' in msg and 'got (' in msg


def test_missing_keys_and_corrupt_files(tmp_path):
    state = source_clip().state_dict()
    state.pop('visual.proj')
    path = tmp_path / 'incomplete.pth'
    torch.save(state, path)
    with pytest.raises(KeyError, match=r"incomplete\.pth.*visual\.proj"):
        stop(path).init_weights()
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='corrupt.pt'):
        read_clip_checkpoint(str(corrupt))
