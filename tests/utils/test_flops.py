# Copyright (c) mmstop contributors. All rights reserved.
"""FLOP counting of mmstop models (issue 11): the models trace (MMEngine's
``FlopAnalyzer``, behind MMAction2's ``get_flops.py``), the selective scan
and the attention are counted, and :class:`MACCounter` (which also counts
on the meta device) agrees with MMEngine's trace."""
import os.path as osp

import pytest
import torch
from helpers.configs import config_model, small_ssp_config
from mmengine.analysis import FlopAnalyzer

import mmstop  # noqa: F401
from mmstop.models.ops import selective_scan
from mmstop.models.prompts.stop_intra import (PixelIntraFramePrompt,
                                              top_k_exact_mask)
from mmstop.models.utils import conv3d_same, operators_recorded
from mmstop.utils.flops import MACCounter, attention_macs, scan_macs

pytestmark = pytest.mark.usefixtures('one_thread')


def build(config):
    """A demo config's model in eval mode (STOP: three class names)."""
    if 'ssp' in osp.basename(config):
        return config_model(config).eval()
    return config_model(config, class_names=['jump', 'run', 'swim']).eval()


def trace_macs(module, *inputs):
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total(), analyzer.by_operator()


class AllOutputs(torch.nn.Module):
    """``fn(*inputs)`` returning every tensor it computes, so that MMEngine's
    trace keeps every operator (it drops those no output depends on)."""

    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *inputs):
        return tuple(self.fn(self.model, *inputs))


def stop_video_outputs(model, x):
    text_prompts, visual_prompts = model.backbone.prompt_generator()
    feature, out = model.backbone.encode_video(
        x, visual_prompts, return_intermediates=True)
    yield from (feature, text_prompts)
    yield from (v for v in out.values() if v.is_floating_point())


def test_pixel_prompt_traces_with_the_fft_backend_chosen():
    """The 1-output-channel scorer convolution uses FFTs on the CPU; traced
    it used to fail with ``size of tensor a (8) must match b (0)``."""
    module = PixelIntraFramePrompt(
        32, 8, kernel_size=(3, 5, 5), scorer_kernel_size=(3, 5, 5)).eval()
    x = torch.randn(1, 4, 3, 32, 32)

    class Frames(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.prompt = module

        def forward(self, x):
            return self.prompt(x)['frames']

    total, ops = trace_macs(Frames(), x)
    pixels = 4 * 32 * 32
    expected = sum(c.weight.numel() * pixels for c in module.modules()
                   if isinstance(c, torch.nn.Conv3d))
    assert ops['conv'] == expected
    with torch.no_grad():
        eager = module(x)['frames']
        traced = torch.jit.trace(Frames(), x, check_trace=False)(x)
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)


def test_conv3d_same_counts_as_a_convolution_under_mac_counter():
    x, w = torch.randn(1, 2, 4, 8, 8), torch.randn(1, 2, 3, 3, 3)
    with MACCounter() as counter:
        out = conv3d_same(x, w, None, (1, 1, 1))
    assert counter.by_operator['convolution'] == w.numel() * 4 * 8 * 8
    torch.testing.assert_close(
        out, conv3d_same(x, w, None, (1, 1, 1)), rtol=1e-5, atol=1e-5)


def test_only_recorders_switch_the_fused_paths():
    """A FLOP counter or a trace; not any dispatch mode (``torch.compile``'s
    fake tensors would otherwise get the scan operator, which has no
    autograd formula)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Other(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    assert not operators_recorded()
    with Other():
        assert not operators_recorded()
    with MACCounter():
        assert operators_recorded()
    seen = []
    torch.jit.trace(
        lambda x: seen.append(operators_recorded()) or x * 2,
        torch.ones(1),
        check_trace=False)
    assert seen == [True]


def test_top_k_exact_mask_traces():
    """``scatter(..., True)`` had no traced schema (paper intra prompt)."""
    scores = torch.randn(2, 3, 16)
    traced = torch.jit.trace(lambda s: top_k_exact_mask(s, 5), scores)
    assert torch.equal(traced(scores), top_k_exact_mask(scores, 5))
    assert (traced(scores).sum(-1) == 5).all()


def test_selective_scan_is_one_operator_when_recorded():
    b, e, length, n = 2, 6, 9, 4
    args = [
        torch.randn(b, e, length),
        torch.rand(b, e, length), -torch.rand(e, n),
        torch.randn(b, n, length),
        torch.randn(b, n, length),
        torch.randn(e),
        torch.randn(b, e, length),
        torch.randn(e)
    ]

    def fn(*t):
        return selective_scan(*t, delta_softplus=True)

    graph = torch.jit.trace(fn, tuple(args)).graph
    kinds = [node.kind() for node in graph.nodes()]
    assert kinds.count('mmstop::selective_scan') == 1
    assert 'aten::bmm' not in kinds
    torch.testing.assert_close(
        torch.jit.trace(fn, tuple(args))(*args), fn(*args))
    with MACCounter() as counter:
        fn(*args)
    assert counter.total == scan_macs(b, e, length, n) == \
        b * e * length * (4 * n + 3)
    meta = fn(*(t.to('meta') for t in args))
    assert meta.device.type == 'meta' and meta.shape == (b, e, length)


@pytest.mark.parametrize('config',
                         ['stop_clip_demo.py', 'stop_clip_paper_demo.py'])
def test_mac_counter_equals_mmengine_trace_on_stop(config):
    model = build(config)
    x = torch.randn(1, 8, 3, 32, 32)
    wrapper = AllOutputs(model, stop_video_outputs)
    expected, ops = trace_macs(wrapper, x)
    assert ops['scaled_dot_product_attention'] > 0  # mmstop's handle
    torch.manual_seed(0)
    with torch.no_grad(), MACCounter() as counter:
        wrapper(x)
    assert counter.total == expected


def test_mac_counter_equals_mmengine_trace_on_ssp(tmp_path):
    config = small_ssp_config(tmp_path, depth=3)
    model = build(config)
    x = torch.randn(1, 1, 3, 4, 32, 32)

    def logits(model, x):
        feats, kwargs = model.extract_feat(x, test_mode=True)
        yield model.cls_head(feats, **kwargs)

    wrapper = AllOutputs(model, logits)
    traced, ops = trace_macs(wrapper, x)
    bb = model.backbone
    length = 1 + 4 * (bb.num_patches + bb.num_prompts)
    d_inner, state = bb.layers[0].mixer.d_inner, bb.layers[0].mixer.d_state
    assert ops['selective_scan'] == 2 * bb.depth * scan_macs(
        1, d_inner, length, state)
    with torch.no_grad(), MACCounter() as counter:
        wrapper(x)
    # the trace drops what no output uses: the frame vectors IFG computes
    # before block 0 (only blocks >= 1 spread them)
    summary = bb.ssp.inner_prompt.inter
    ca, c = summary.heads.in_features, summary.heads.out_features
    dead = 4 * bb.num_patches * ca + 4 * ca * c
    assert counter.total == traced + dead
    with torch.no_grad(), MACCounter() as meta_counter:
        meta = build(config).to('meta')
        AllOutputs(meta, logits)(x.to('meta'))
    assert meta_counter.total == counter.total


def test_attention_macs():
    assert attention_macs([2, 3, 5, 8], [2, 3, 7, 8], [2, 3, 7, 4]) == \
        2 * 3 * 5 * 7 * (8 + 4)
