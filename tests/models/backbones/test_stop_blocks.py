# Copyright (c) mmstop contributors. All rights reserved.
"""FrameTokenSlots: the per-frame slot layout and the key masks of padded
slots (the blocks themselves are proved by the parity tests)."""
import pytest
import torch

from mmstop.models.backbones.stop_blocks import FrameTokenSlots
from mmstop.models.prompts import InterFramePrompts

L, B, T, P, G, N, D = 2, 2, 3, 4, 4, 5, 8


def test_slots_of_each_layer_replace_the_previous_ones():
    per_frame = torch.randn(L, T * P, D)
    offset = torch.randn(B, T, P, D)
    slots = FrameTokenSlots(per_frame, B, T, P, G, N,
                            InterFramePrompts(offset, None, None, {}))
    tokens = torch.randn(B, T, 1 + N, D)
    f = slots.insert(1, tokens)
    assert f.shape == (B, T, 1 + P + N, D) and slots.key_padding is None
    expected = per_frame[1].reshape(T, P, D) + offset
    assert torch.equal(f[:, :, 1:1 + P], expected)
    assert torch.equal(slots.remove(f), tokens)
    shared = FrameTokenSlots(torch.randn(L, P, D), B, T, P, G, N)
    assert torch.equal(
        shared.insert(0, tokens)[0, 2, 1:1 + P], shared.local[0, 0, 0])
    with pytest.raises(ValueError, match='cover 2 frames, video has 3'):
        FrameTokenSlots(torch.randn(L, 2 * P, D), B, T, P, G, N)


def test_padded_extra_slots_are_masked_keys():
    S = 3
    extra = torch.randn(B, T, S, D)
    padding = torch.zeros(B, T, S, dtype=torch.bool)
    padding[1, 2, 1:] = True
    slots = FrameTokenSlots(
        torch.randn(L, P, D), B, T, P, G, N,
        InterFramePrompts(None, extra, padding, {}))
    tokens = torch.randn(B, T, 1 + N, D)
    f = slots.insert(0, tokens)
    F = 1 + P + S + N
    assert f.shape == (B, T, F, D)
    assert torch.equal(f[:, :, 1 + P:1 + P + S], extra)
    assert torch.equal(slots.remove(f), tokens)
    mask_f, mask_g = slots.key_padding
    assert mask_f.shape == (B * T, G + F) and mask_g.shape == (B, G + T * F)
    # frame 2 of video 1: its two padded slots, after G globals, CLS, P local
    assert mask_f.nonzero().tolist() == [[1 * T + 2, G + 1 + P + 1],
                                         [1 * T + 2, G + 1 + P + 2]]
    assert mask_g.nonzero().tolist() == [[1, G + 2 * F + 1 + P + 1],
                                         [1, G + 2 * F + 1 + P + 2]]
