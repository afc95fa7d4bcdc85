# Copyright (c) mmstop contributors. All rights reserved.
"""Inputs shared by the selective-scan tests."""
import torch

from mmstop.models.ops import selective_scan


def make_inputs(batch,
                channels,
                length,
                state,
                groups=None,
                seed=0,
                dtype=torch.float32):
    """Mamba-like scan inputs (A = -exp(~log(1..S))), all options present."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    bc_shape = ((batch, state, length) if groups is None else
                (batch, groups, state, length))
    a_log = torch.log(torch.arange(1, state + 1, dtype=torch.float64))
    A = -torch.exp(a_log.expand(channels, state) + 0.1 * rnd(channels, state))
    inputs = dict(
        u=rnd(batch, channels, length),
        delta=rnd(batch, channels, length) * 0.5 - 1,
        A=A,
        B=rnd(*bc_shape),
        C=rnd(*bc_shape),
        D=rnd(channels),
        z=rnd(batch, channels, length),
        delta_bias=rnd(channels) * 0.5)
    return {k: v.to(dtype) for k, v in inputs.items()}


def select(inputs, opts):
    """Keep u, delta, A, B, C and the optional inputs named in ``opts``."""
    keep = {'u', 'delta', 'A', 'B', 'C'}
    keep |= {k for k in ('D', 'z', 'delta_bias') if opts.get(k)}
    return {k: v for k, v in inputs.items() if k in keep}


def scan(impl, inputs, **kwargs):
    """:func:`selective_scan` on a dict of inputs."""
    x = dict(inputs)
    return selective_scan(
        x.pop('u'),
        x.pop('delta'),
        x.pop('A'),
        x.pop('B'),
        x.pop('C'),
        impl=impl,
        **x,
        **kwargs)


def forward_backward(fn, inputs, g_out, g_last=None, **kwargs):
    """``fn(**inputs, **kwargs)`` and the gradients of every input for the
    loss ``<out, g_out> (+ <last_state, g_last>)``.

    Returns:
        tuple: ``out``, ``last_state`` (or None), dict of gradients.
    """
    leaves = {
        k: v.detach().clone().requires_grad_(True)
        for k, v in inputs.items()
    }
    res = fn(**leaves, return_last_state=g_last is not None, **kwargs)
    out, last = res if g_last is not None else (res, None)
    loss = (out * g_out).sum()
    if g_last is not None:
        loss = loss + (last * g_last).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out, last, dict(zip(leaves, grads))
