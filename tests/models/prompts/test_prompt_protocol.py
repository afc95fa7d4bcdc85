# Copyright (c) mmstop contributors. All rights reserved.
"""The prompt-module interface (mmstop/models/prompts/base.py): a variant
written outside mmstop plugs into STOPCLIP through ``type=`` and its hooks
run where the interface says, without touching the backbone."""
import pytest
import torch
import torch.nn as nn
from helpers import TINY_ARCH_SHORT_TEXT

from mmstop.models.backbones import STOPCLIP
from mmstop.models.prompts import (BaseInterFramePrompt, BaseIntraFramePrompt,
                                   InterFramePrompts, IntraFramePromptOutput)

ARCH = TINY_ARCH_SHORT_TEXT
B, T, N, WIDTH = 2, 3, 16, 64


class LayerOneTokenPrompt(BaseIntraFramePrompt):
    """Adds a learned vector to the patches at the input of layer 1; every
    hook call is recorded."""

    def __init__(self, embed_dims, num_layers):
        super().__init__()
        self.bias = nn.Parameter(torch.ones(embed_dims))
        self.num_layers = num_layers
        self.calls = []

    def prompts_layer(self, layer):
        return layer == 1

    def prompt_tokens(self, tokens, layer, norm, attn):
        self.calls.append((layer, tuple(tokens.shape), norm, attn))
        patches = tokens[:, :, 1:] + self.bias
        return IntraFramePromptOutput(
            torch.cat([tokens[:, :, :1], patches], dim=2), None,
            dict(probe=patches.mean(-1)))


class PaddedSlots(BaseInterFramePrompt):
    """``num_slots`` extra slots per frame, all but ``real`` of them padding
    (the real ones hold ``fill``)."""

    def __init__(self, embed_dims, num_slots=3, real=0, fill=5.):
        super().__init__()
        self.embed_dims, self.num_slots = embed_dims, num_slots
        self.real, self.fill = real, fill
        self.inputs = []

    def frame_prompts(self, tokens, region_mask=None):
        self.inputs.append((tokens, region_mask))
        B, T = tokens.shape[:2]
        extra = tokens.new_full((B, T, self.num_slots, self.embed_dims),
                                self.fill)
        padding = torch.arange(self.num_slots) >= self.real
        return InterFramePrompts(None, extra,
                                 padding.expand(B, T, self.num_slots),
                                 dict(extra_slots=extra))


def build(intra=None, inter=None):
    torch.manual_seed(0)
    return STOPCLIP(
        arch=ARCH, num_frames=T, intra_prompt=intra,
        inter_prompt=inter).eval()


def frames():
    torch.manual_seed(1)
    return torch.randn(B, T, 3, 32, 32)


def test_token_hook_runs_at_its_layers_with_the_frozen_block():
    model = build(intra=dict(type=LayerOneTokenPrompt))
    plain = build()
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        _, out = model.encode_video(frames(), return_intermediates=True)
        _, ref = plain.encode_video(frames(), return_intermediates=True)
    (layer, shape, norm, attn), = model.intra_prompt.calls
    block = model.clip.visual.transformer.resblocks[1]
    assert (layer, shape) == (1, (B, T, 1 + N, WIDTH))  # slots removed
    assert norm is block.ln_1 and attn is block.attn
    # per-layer intermediates are stacked over the prompted layers
    assert out['probe_layers'].shape == (1, B, T, N)
    assert 'mask' not in out  # the hook gave no region mask
    # layer 0 is untouched, layer 1 is prompted
    assert torch.equal(out['vis_global_layers'][0],
                       ref['vis_global_layers'][0])
    assert not torch.allclose(out['vis_global_layers'][1],
                              ref['vis_global_layers'][1])


def test_padded_extra_slots_are_masked_keys():
    """Slots the inter prompt marks as padding change nothing; real ones do."""
    padded = build(inter=dict(type=PaddedSlots, num_slots=3, real=0))
    plain = build()
    with torch.no_grad():
        feature, out = padded.encode_video(frames(), return_intermediates=True)
        reference = plain.encode_video(frames())
        (tokens, region_mask), = padded.inter_prompt.inputs
        assert tokens.shape == (B, T, 1 + N, WIDTH) and region_mask is None
        assert torch.equal(tokens, out['h0'])  # the layer-0 tokens
        assert out['extra_slots'].shape == (B, T, 3, WIDTH)
        torch.testing.assert_close(feature, reference)
        real = build(inter=dict(type=PaddedSlots, num_slots=3, real=1))
        assert not torch.allclose(
            real.encode_video(frames()), reference, atol=1e-3)


def test_only_the_interface_is_accepted():
    with pytest.raises(TypeError, match='must be a BaseIntraFramePrompt'):
        build(intra=dict(type=nn.Identity))
    with pytest.raises(TypeError, match='must be a BaseInterFramePrompt'):
        build(inter=dict(type=LayerOneTokenPrompt))
    with pytest.raises(ValueError, match='mode or type'):
        build(intra=dict(type=LayerOneTokenPrompt, mode='paper'))
    with pytest.raises(KeyError, match="'NoSuchPrompt' is not registered"):
        build(intra=dict(type='NoSuchPrompt'))
