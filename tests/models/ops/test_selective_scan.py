# Copyright (c) mmstop contributors. All rights reserved.
"""Selective scan: reference vs mamba_ssm golden data, fast vs reference."""
import importlib
import os.path as osp

import pytest
import torch
from helpers import assert_rel_close
from helpers.scan import make_inputs, scan, select

from mmstop.models.ops import selective_scan_fast, selective_scan_reference

# the submodule (the package re-exports a function of the same name)
scan_module = importlib.import_module('mmstop.models.ops.selective_scan')

# ----------------------------------------------------------------- golden


@pytest.fixture(scope='module')
def golden(ssp_parity_dir):
    return torch.load(
        osp.join(ssp_parity_dir, 'golden_selective_scan.pt'),
        weights_only=True)


def golden_inputs(g):
    return {k: g[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias')}


@pytest.mark.parity
@pytest.mark.parametrize('impl', ['reference', 'fast', 'auto'])
def test_matches_golden(golden, impl):
    assert golden['config']['delta_softplus']
    x = golden_inputs(golden)
    out, last = scan(
        impl,
        dict(x, z=golden['z']),
        delta_softplus=True,
        return_last_state=True)
    assert out.dtype == torch.float32
    assert_rel_close(out, golden['out'], what='out')
    assert_rel_close(last, golden['last_state'], what='last_state')
    out_no_z = scan(impl, x, delta_softplus=True)
    assert_rel_close(out_no_z, golden['out_no_z'], what='out_no_z')
    # the golden data do depend on the gate and on delta_bias
    assert (golden['out'] - golden['out_no_z']).abs().max() > 1e-2
    no_bias = dict(x, delta_bias=None)
    assert (scan(impl, no_bias, delta_softplus=True) -
            golden['out_no_z']).abs().max() > 1e-2


@pytest.mark.parity
def test_fast_golden_small_tiles(golden):
    """Many tiles and channel blocks: carries between tiles are exact."""
    x = golden_inputs(golden)
    out, last = selective_scan_fast(
        **x,
        z=golden['z'],
        delta_softplus=True,
        return_last_state=True,
        tile_elems=1,
        step_elems=40)
    assert_rel_close(out, golden['out'], what='out')
    assert_rel_close(last, golden['last_state'], what='last_state')


# ------------------------------------------------------- fast vs reference

CASES = [
    # batch, channels, length, state, groups, options
    (1, 4, 1, 3, None, dict()),
    (1, 8, 5, 4, None, dict(delta_softplus=True)),
    (2, 6, 37, 5, None,
     dict(D=True, z=True, delta_bias=True, delta_softplus=True)),
    (3, 5, 19, 2, None, dict(z=True)),
    (2, 8, 23, 4, 2, dict(D=True, delta_bias=True, delta_softplus=True)),
    (1, 16, 64, 16, None,
     dict(D=True, z=True, delta_bias=True, delta_softplus=True)),
]
TILINGS = [
    dict(),
    dict(tile_elems=1, step_elems=1),
    dict(tile_elems=50, step_elems=9)
]


@pytest.mark.parametrize('case', CASES)
def test_fast_matches_reference(case):
    batch, channels, length, state, groups, opts = case
    inputs = select(make_inputs(batch, channels, length, state, groups), opts)
    softplus = opts.get('delta_softplus', False)
    ref, ref_last = selective_scan_reference(
        **inputs, delta_softplus=softplus, return_last_state=True)
    for tiling in TILINGS:
        out, last = selective_scan_fast(
            **inputs,
            delta_softplus=softplus,
            return_last_state=True,
            **tiling)
        assert_rel_close(out, ref, rel=1e-5, what=f'out {tiling}')
        assert_rel_close(last, ref_last, rel=1e-5, what=f'last {tiling}')
    assert torch.equal(
        scan('auto', inputs, delta_softplus=softplus),
        scan('fast', inputs, delta_softplus=softplus))


def test_fast_at_real_width():
    """VideoMamba-tiny width (E = 384, S = 16), several tiles and blocks."""
    inputs = make_inputs(2, 384, 97, 16, seed=3)
    ref, ref_last = selective_scan_reference(
        **inputs, delta_softplus=True, return_last_state=True)
    out, last = selective_scan_fast(
        **inputs, delta_softplus=True, return_last_state=True, step_elems=4096)
    assert_rel_close(out, ref, rel=1e-5, what='out')
    assert_rel_close(last, ref_last, rel=1e-5, what='last')


def test_non_contiguous_inputs():
    """The mixer passes slices of in_proj / x_proj outputs."""
    x = make_inputs(2, 6, 11, 4)
    xz = torch.cat([x['u'], x['z']], 1).transpose(1, 2).contiguous()
    u, z = xz.transpose(1, 2).chunk(2, dim=1)
    bc = torch.cat([x['B'], x['C']], 1).transpose(1, 2).contiguous()
    B, C = bc.transpose(1, 2).chunk(2, dim=1)
    assert not (u.is_contiguous() or B.is_contiguous())
    args = dict(D=x['D'], z=z, delta_bias=x['delta_bias'], delta_softplus=True)
    ref = selective_scan_reference(x['u'], x['delta'], x['A'], x['B'], x['C'],
                                   **dict(args, z=x['z']))
    out = selective_scan_fast(u, x['delta'], x['A'], B, C, **args)
    assert_rel_close(out, ref, rel=1e-5)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_computes_in_fp32(dtype):
    x = make_inputs(1, 4, 9, 3, dtype=dtype)
    x32 = {k: v.float() for k, v in x.items()}
    for impl in ('reference', 'fast'):
        out = scan(impl, x, delta_softplus=True)
        assert out.dtype == dtype
        expected = scan(impl, x32, delta_softplus=True).to(dtype)
        assert torch.equal(out, expected)


def test_float64_stays_float64():
    x = make_inputs(1, 3, 6, 2, dtype=torch.float64)
    out, last = scan('fast', x, return_last_state=True)
    assert out.dtype == last.dtype == torch.float64
    ref = scan('reference', x)
    assert_rel_close(out, ref, rel=1e-12)


def test_large_negative_delta_a_does_not_overflow():
    """exp(delta * A) underflows to 0 (state reset); nothing becomes inf."""
    x = make_inputs(1, 4, 30, 3)
    x['delta'] = x['delta'].abs() * 50  # delta * A down to about -1e3
    ref = scan('reference', x, delta_softplus=True)
    out = scan('fast', x, delta_softplus=True)
    assert torch.isfinite(out).all()
    assert_rel_close(out, ref, rel=1e-5)


# -------------------------------------------------------------- gradients

GRAD_CASES = [
    (1, 3, 1, 2, None, 'all'),
    (2, 4, 13, 3, None, 'all'),
    (2, 4, 10, 3, 2, 'all'),
    (1, 5, 9, 4, None, 'plain'),  # no D, z, bias, softplus
]


@pytest.mark.parametrize('case', GRAD_CASES)
def test_fast_gradients_match_reference(case):
    batch, channels, length, state, groups, opts = case
    x = make_inputs(
        batch, channels, length, state, groups, dtype=torch.float64)
    if opts == 'plain':
        x = select(x, {})
    kwargs = dict(delta_softplus=opts == 'all', return_last_state=True)
    g = torch.Generator().manual_seed(7)
    grads = {}
    for impl, tiling in (('reference', {}), ('fast', {}),
                         ('fast', dict(tile_elems=1, step_elems=1)),
                         ('fast', dict(tile_elems=20, step_elems=7))):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        if impl == 'reference':
            out, last = selective_scan_reference(**leaves, **kwargs)
        else:
            out, last = selective_scan_fast(**leaves, **kwargs, **tiling)
        if not grads:
            g_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
            g_last = torch.randn(last.shape, generator=g, dtype=last.dtype)
        loss = (out * g_out).sum() + (last * g_last).sum()
        grads[(impl, str(tiling))] = dict(
            zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    ref = grads[('reference', '{}')]
    for key, got in grads.items():
        for name in ref:
            if length == 1 and name == 'A':  # h_prev = 0: dA is exactly 0
                assert got[name].abs().max() == 0
                continue
            assert_rel_close(
                got[name], ref[name], rel=1e-10, what=f'{key} d{name}')


def test_fast_gradcheck():
    x = make_inputs(2, 2, 5, 2, dtype=torch.float64, seed=5)
    names = list(x)

    def f(*tensors):
        kw = dict(zip(names, tensors))
        out, last = selective_scan_fast(
            **kw,
            delta_softplus=True,
            return_last_state=True,
            tile_elems=8,
            step_elems=4)
        return out, last

    leaves = [v.clone().requires_grad_(True) for v in x.values()]
    assert torch.autograd.gradcheck(f, leaves)


def test_fp32_gradients_close_to_reference():
    x = make_inputs(2, 8, 40, 4)
    res = []
    for impl in ('reference', 'fast'):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        out = scan(impl, leaves, delta_softplus=True)
        out.square().sum().backward()
        res.append({k: v.grad for k, v in leaves.items()})
    for name in x:
        assert_rel_close(res[1][name], res[0][name], rel=1e-5, what=name)


# ------------------------------------------------------ errors / dispatch


def test_bad_impl():
    x = make_inputs(1, 2, 3, 2)
    with pytest.raises(ValueError, match="impl must be one of"):
        scan('cuda', x)


@pytest.mark.parametrize('name, value, match', [
    ('u', torch.zeros(2, 4), r'`u` must have shape \[batch, channels'),
    ('delta', torch.zeros(1, 4, 6), r'`delta` must have the shape of `u`'),
    ('A', torch.zeros(3, 2), r'`A` must have shape \[channels, state\]'),
    ('B', torch.zeros(1, 2, 6), r'`B` must have shape \[batch, state'),
    ('C', torch.zeros(1, 2, 4), r'`C` must have shape \[batch, state'),
    ('B', torch.zeros(1, 3, 2, 5), r'groups dividing channels = 4'),
    ('D', torch.zeros(3), r'`D` must have shape \[channels\]'),
    ('delta_bias', torch.zeros(4, 1), r'`delta_bias` must have shape'),
    ('z', torch.zeros(1, 4, 4), r'`z` must have the shape of `u`'),
    ('A', torch.zeros(4, 2, dtype=torch.complex64), r'complex `A`'),
])
@pytest.mark.parametrize('impl', ['reference', 'fast', 'auto'])
def test_bad_shapes(name, value, match, impl):
    x = make_inputs(1, 4, 5, 2)
    x[name] = value
    with pytest.raises(ValueError, match=match):
        scan(impl, x)


def test_auto_falls_back_on_cpu(monkeypatch):
    """'auto' never calls mamba_ssm for CPU tensors (even if importable)."""

    def fake_cuda_scan_fn():
        raise AssertionError('mamba_ssm must not be used for CPU tensors')

    monkeypatch.setattr(scan_module, '_mamba_ssm_scan_fn', fake_cuda_scan_fn)
    x = make_inputs(1, 4, 7, 3)
    assert torch.equal(scan('auto', x), scan('fast', x))


@pytest.fixture
def worker_threads(monkeypatch):
    """Make even small inputs use two worker threads."""
    monkeypatch.setattr(scan_module, '_MIN_WORKER_ELEMS', 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('groups', [None, 2])
def test_fast_worker_threads_match_reference(worker_threads, groups):
    blocks, workers = scan_module._plan(
        torch.zeros(2, 8, 30), 4, groups or 1, scan_module._TILE_ELEMS,
        scan_module._STEP_ELEMS)
    assert workers == 2 and len(blocks) >= 2
    x = make_inputs(2, 8, 30, 4, groups, dtype=torch.float64)
    kwargs = dict(delta_softplus=True, return_last_state=True)
    g = torch.Generator().manual_seed(1)
    results = []
    for impl in ('reference', 'fast'):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        out, last = scan(impl, leaves, **kwargs)
        if not results:
            g_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
            g_last = torch.randn(last.shape, generator=g, dtype=last.dtype)
        loss = (out * g_out).sum() + (last * g_last).sum()
        grads = torch.autograd.grad(loss, list(leaves.values()))
        results.append((out, last, dict(zip(leaves, grads))))
    (o_r, l_r, g_r), (o_f, l_f, g_f) = results
    assert_rel_close(o_f, o_r, rel=1e-10, what='out')
    assert_rel_close(l_f, l_r, rel=1e-10, what='last')
    for name in g_r:
        assert_rel_close(g_f[name], g_r[name], rel=1e-10, what=f'd{name}')
