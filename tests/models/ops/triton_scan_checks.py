# Copyright (c) mmstop contributors. All rights reserved.
"""Triton selective scan against the sequential reference.

Not collected by a plain ``pytest`` run (the file name does not start with
``test_``): Triton kernels need a GPU, or Triton's interpreter enabled before
``triton`` is imported. ``test_selective_scan_triton.py`` runs this file in a
subprocess with ``TRITON_INTERPRET=1`` (CPU tensors); on a machine with CUDA,
``pytest tests/models/ops/triton_scan_checks.py`` runs it on the GPU (the GPU
check tool does).

Tolerances (max abs error over max |reference|):

* fp32 kernel vs fp64 reference: 1e-5 (round-off measured about 5e-7);
* fp64 kernel vs fp64 reference: 1e-12;
* bf16 / fp16 inputs: kernel vs the fp32 reference on the same (rounded)
  inputs, outputs and gradients compared after rounding to the input dtype:
  1e-2 for bf16 (8-bit mantissa), 2e-3 for fp16.
"""
import os

import pytest
import torch
from helpers import assert_rel_close
from helpers.scan import forward_backward, make_inputs, select

from mmstop.models.ops import selective_scan_reference

if torch.cuda.is_available():
    DEVICE = 'cuda'
elif os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
    DEVICE = 'cpu'
else:  # pragma: no cover - collected by hand without GPU or interpreter
    pytest.skip(
        'needs CUDA or TRITON_INTERPRET=1 (set before triton is '
        'imported)',
        allow_module_level=True)

from mmstop.models.ops.selective_scan_triton import \
    selective_scan_triton  # noqa: E402

pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')

ALL = dict(D=True, z=True, delta_bias=True, delta_softplus=True)
CASES = [
    # batch, channels, length, state, groups, options, chunk, block_e
    (1, 4, 1, 3, None, {}, 4, 2),  # one step
    (2, 6, 37, 5, None, ALL, 8, 4),  # 5 chunks, ragged channel block
    (3, 5, 19, 2, None, dict(z=True), 4, 8),
    (2, 8, 23, 4, 2, dict(D=True, delta_bias=True,
                          delta_softplus=True), 8, 4),  # grouped B / C
    (1, 4, 16, 3, None, dict(delta_softplus=True), 16, 4),  # one full chunk
    (2, 3, 9, 4, None, dict(D=True), 4, 2),
    (1, 5, 12, 3, None, dict(delta_bias=True), 8, 8),  # bias, no softplus
    (1, 8, 70, 16, None, ALL, 64, 32),  # default chunk, S = 16
]


def case_id(case):
    b, e, l, s, g, opts, chunk, block = case
    return (f'b{b}e{e}l{l}s{s}g{g}-{"+".join(opts) or "plain"}'
            f'-c{chunk}x{block}')


def run_pair(case, dtype=torch.float32, ref_dtype=torch.float64):
    """Kernel in ``dtype`` and reference in ``ref_dtype`` on equal inputs."""
    batch, channels, length, state, groups, opts, chunk, block = case
    inputs = select(
        make_inputs(batch, channels, length, state, groups, dtype=dtype), opts)
    softplus = opts.get('delta_softplus', False)
    g = torch.Generator().manual_seed(11)
    g_out = torch.randn(batch, channels, length, generator=g).to(dtype)
    g_last = torch.randn(batch, channels, state, generator=g)
    ref = forward_backward(
        selective_scan_reference, {
            k: v.to(ref_dtype)
            for k, v in inputs.items()
        },
        g_out.to(ref_dtype),
        g_last.to(ref_dtype),
        delta_softplus=softplus)
    got = forward_backward(
        selective_scan_triton, {
            k: v.to(DEVICE)
            for k, v in inputs.items()
        },
        g_out.to(DEVICE),
        g_last.to(DEVICE),
        delta_softplus=softplus,
        chunk=chunk,
        block_e=block)
    return got, ref


def check(got, ref, rel, dtype=None):
    (out, last, grads), (r_out, r_last, r_grads) = got, ref
    for name, grad in grads.items():  # gradients in their input's dtype
        assert grad.dtype == out.dtype, f'd{name} dtype {grad.dtype}'
    if dtype is not None:  # compare at the kernel's output precision
        assert out.dtype == dtype
        r_out = r_out.to(dtype)
        r_grads = {k: v.to(dtype) for k, v in r_grads.items()}
    assert_rel_close(out.cpu(), r_out, 'out', rel=rel)
    assert_rel_close(last.cpu(), r_last, 'last state', rel=rel)
    for name, r_grad in r_grads.items():
        if r_grad.abs().max() == 0:  # e.g. dA with one step: exactly 0
            assert grads[name].abs().max() == 0, f'd{name}'
            continue
        assert_rel_close(grads[name].cpu(), r_grad, f'd{name}', rel=rel)


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_fp32_matches_fp64_reference(case):
    check(*run_pair(case), rel=1e-5)


@pytest.mark.parametrize('case', CASES[1:4], ids=case_id)
def test_fp64_matches_reference(case):
    got, ref = run_pair(case, torch.float64)
    assert got[0].dtype == got[1].dtype == torch.float64
    check(got, ref, rel=1e-12)


@pytest.mark.parametrize('dtype, rel', [(torch.bfloat16, 1e-2),
                                        (torch.float16, 2e-3)])
def test_half_inputs_accumulate_in_fp32(dtype, rel):
    got, ref = run_pair(CASES[1], dtype, ref_dtype=torch.float32)
    assert got[1].dtype == torch.float32  # the state is fp32
    check(got, ref, rel, dtype)


def test_non_contiguous_inputs():
    """The mixer's layout: delta, B, C transposed views, u / z halves."""
    x = make_inputs(2, 6, 11, 4)
    xz = torch.cat([x['u'], x['z']], 1).transpose(1, 2).contiguous()
    u, z = xz.transpose(1, 2).chunk(2, dim=1)
    bc = torch.cat([x['B'], x['C']], 1).transpose(1, 2).contiguous()
    B, C = bc.transpose(1, 2).chunk(2, dim=1)
    delta = x['delta'].transpose(1, 2).contiguous().transpose(1, 2)
    assert not (u.is_contiguous() or B.is_contiguous()
                or delta.is_contiguous())
    kw = dict(D=x['D'], delta_bias=x['delta_bias'], delta_softplus=True)
    ref = selective_scan_reference(
        x['u'], x['delta'], x['A'], x['B'], x['C'], z=x['z'], **kw)
    to = dict(device=DEVICE)
    out = selective_scan_triton(
        u.to(**to),
        delta.to(**to),
        x['A'].to(**to),
        B.to(**to),
        C.to(**to),
        z=z.to(**to),
        **{
            k: v.to(**to) if torch.is_tensor(v) else v
            for k, v in kw.items()
        })
    assert_rel_close(out.cpu(), ref, rel=1e-5)


def test_output_gradient_only_and_state_gradient_only():
    """Either output of (out, last_state) may be unused by the loss."""
    x = make_inputs(1, 4, 10, 3)
    leaves = {k: v.to(DEVICE).requires_grad_(True) for k, v in x.items()}
    out, last = selective_scan_triton(
        **leaves,
        delta_softplus=True,
        return_last_state=True,
        chunk=4,
        block_e=2)
    (g_u, ) = torch.autograd.grad(last.sum(), [leaves['u']], retain_graph=True)
    ref_leaves = {k: v.double().requires_grad_(True) for k, v in x.items()}
    r_out, r_last = selective_scan_reference(
        **ref_leaves, delta_softplus=True, return_last_state=True)
    (r_u, ) = torch.autograd.grad(
        r_last.sum(), [ref_leaves['u']], retain_graph=True)
    assert_rel_close(g_u.cpu(), r_u, 'du from last state only', rel=1e-5)
    # out only: the path through `last` contributes nothing
    (g_u, ) = torch.autograd.grad(out.sum(), [leaves['u']])
    (r_u, ) = torch.autograd.grad(r_out.sum(), [ref_leaves['u']])
    assert_rel_close(g_u.cpu(), r_u, 'du from out only', rel=1e-5)


def test_large_negative_delta_a_does_not_overflow():
    """exp(delta * A) underflows to 0 (state reset); nothing becomes inf."""
    x = make_inputs(1, 4, 30, 3)
    x['delta'] = x['delta'].abs() * 50  # delta * A down to about -1e3
    got = forward_backward(
        selective_scan_triton, {
            k: v.to(DEVICE)
            for k, v in x.items()
        },
        torch.ones(1, 4, 30, device=DEVICE),
        delta_softplus=True,
        chunk=8,
        block_e=4)
    ref = forward_backward(
        selective_scan_reference, {
            k: v.double()
            for k, v in x.items()
        },
        torch.ones(1, 4, 30, dtype=torch.float64),
        delta_softplus=True)
    assert all(torch.isfinite(g).all() for g in got[2].values())
    assert_rel_close(got[0].cpu(), ref[0], rel=1e-5)
    for name in ref[2]:
        assert_rel_close(
            got[2][name].cpu(), ref[2][name], f'd{name}', rel=1e-5)


def test_mixer_with_triton_scan_matches_reference():
    """A whole bidirectional mixer (forward + parameter gradients)."""
    from mmstop.models.backbones.mamba_mixer import BiMambaMixer
    torch.manual_seed(0)
    results = []
    for impl in ('reference', 'triton'):
        torch.manual_seed(0)
        mixer = BiMambaMixer(16, d_state=4, scan_impl=impl)
        if impl == 'triton':
            mixer = mixer.to(DEVICE)
        x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(1))
        out = mixer(x.to(next(mixer.parameters()).device))
        out.square().sum().backward()
        results.append((out.detach().cpu(), {
            n: p.grad.cpu()
            for n, p in mixer.named_parameters()
        }))
    (r_out, r_grads), (out, grads) = results
    assert_rel_close(out, r_out, 'mixer out', rel=1e-5)
    for name in r_grads:
        assert_rel_close(
            grads[name], r_grads[name], f'mixer d{name}', rel=1e-4)
