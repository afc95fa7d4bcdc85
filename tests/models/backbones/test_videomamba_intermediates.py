# Copyright (c) mmstop contributors. All rights reserved.
"""VideoMamba.forward(..., return_intermediates=True): what SSP computed in
every block (issue 11, for tools/visualize_prompts.py)."""
import pytest
import torch

from mmstop.models import VideoMamba

pytestmark = pytest.mark.usefixtures('one_thread')


def model():
    torch.manual_seed(0)
    vm = VideoMamba(
        arch=dict(embed_dims=32, depth=3),
        img_size=32,
        patch_size=8,
        num_frames=4,
        ssp=dict(hidden_dims=16, attn_dims=16, num_heads=2))
    # SSP starts at zero (no gathering, no frame weights to speak of)
    with torch.no_grad():
        for p in vm.ssp.parameters():
            p.normal_(0, 0.5)
    return vm.eval()


def test_intermediates_are_what_the_blocks_computed():
    vm = model()
    x = torch.randn(2, 3, 4, 32, 32)
    weights, gathered = [], []
    hooks = [
        vm.ssp.frame_importance.register_forward_hook(
            lambda m, i, o: weights.append(o)),
        vm.ssp.inner_prompt.inter.register_forward_hook(
            lambda m, i, o: gathered.append((i[0], o))),
    ]
    with torch.no_grad():
        feature, out = vm(x, return_intermediates=True)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(feature, vm(x))
    assert set(out) == {'ssp_gathering', 'ssp_frame_weights'}
    assert out['ssp_frame_weights'].shape == (2, 2, 4)  # blocks 1, 2
    torch.testing.assert_close(out['ssp_frame_weights'], torch.stack(weights))
    torch.testing.assert_close(out['ssp_frame_weights'].sum(-1),
                               torch.ones(2, 2))
    assert out['ssp_gathering'].shape == (3, 2, 4, 16)  # 4 x 4 patches
    summary = vm.ssp.inner_prompt.inter
    kernel = summary.convs.weight.reshape(16, 16)  # [Ca, h * w]
    for layer, (g, frame_vectors) in enumerate(gathered):
        contributions = g.reshape(2, 4, 16, 16) * kernel.t()
        torch.testing.assert_close(out['ssp_gathering'][layer],
                                   contributions.norm(dim=-1))
        # the contributions are what the frame vector sums
        torch.testing.assert_close(
            summary.heads(contributions.sum(2) + summary.convs.bias),
            frame_vectors)


def test_without_ssp():
    vm = VideoMamba(
        arch=dict(embed_dims=32, depth=2),
        img_size=32,
        patch_size=8,
        num_frames=4).eval()
    with torch.no_grad():
        feature, out = vm(
            torch.randn(1, 3, 4, 32, 32), return_intermediates=True)
    assert out == {} and feature.shape == (1, 32)
