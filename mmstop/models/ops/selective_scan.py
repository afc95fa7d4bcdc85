# Copyright (c) mmstop contributors. All rights reserved.
"""Selective scan (the S6 recurrence of Mamba / VideoMamba) in pure PyTorch.

The recurrence (``shared/spec/ssp.md`` §1.6), per batch element ``b``,
channel ``e`` and state index ``s``::

    delta[b,e,t] = softplus(delta_raw[b,e,t] + delta_bias[e])   # optional
    h[b,e,s]     = 0                                            # before t = 0
    h[b,e,s]     = exp(delta[b,e,t] * A[e,s]) * h[b,e,s]
                   + delta[b,e,t] * B[b,s,t] * u[b,e,t]         # Euler B, not ZOH
    y[b,e,t]     = sum_s C[b,s,t] * h[b,e,s] + D[e] * u[b,e,t]
    out[b,e,t]   = y[b,e,t] * silu(z[b,e,t])                    # optional gate

Shapes and meaning follow ``mamba_ssm.ops.selective_scan_interface
.selective_scan_fn``. This file is written from the spec; it shares no code
with mamba_ssm.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

IMPLS = ('auto', 'reference', 'fast')


def _mamba_ssm_scan_fn():
    """Return mamba_ssm's CUDA ``selective_scan_fn`` or ``None``.

    mamba_ssm is optional: any import failure (package absent, CUDA
    extension not built, ...) simply means "not available".
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import \
            selective_scan_fn  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return None
    return selective_scan_fn


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> Tuple[int, int,
                                                                 int, int]:
    """Validate shapes; return ``(batch, channels, length, state)``."""
    for name, t in (('u', u), ('delta', delta), ('A', A), ('B', B),
                    ('C', C), ('D', D), ('z', z), ('delta_bias', delta_bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f'selective_scan: `{name}` must be a torch.Tensor '
                            f'or None, got {type(t).__name__}')
    if u.dim() != 3:
        raise ValueError('selective_scan: `u` must have shape '
                         f'[batch, channels, length], got {tuple(u.shape)}')
    batch, channels, length = u.shape
    if tuple(delta.shape) != (batch, channels, length):
        raise ValueError('selective_scan: `delta` must have the shape of `u` '
                         f'[batch, channels, length] = {(batch, channels, length)}'
                         f', got {tuple(delta.shape)}')
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError('selective_scan: `A` must have shape [channels, '
                         f'state] with channels = {channels}, got '
                         f'{tuple(A.shape)}')
    if A.is_complex():
        raise ValueError('selective_scan: complex `A` is not supported '
                         '(VideoMamba uses a real A)')
    state = A.shape[1]
    for name, t in (('B', B), ('C', C)):
        if t.dim() == 3:
            ok = tuple(t.shape) == (batch, state, length)
        elif t.dim() == 4:
            groups = t.shape[1]
            ok = (t.shape[0] == batch and groups > 0
                  and channels % groups == 0
                  and tuple(t.shape[2:]) == (state, length))
        else:
            ok = False
        if not ok:
            raise ValueError(
                f'selective_scan: `{name}` must have shape [batch, state, '
                f'length] = {(batch, state, length)} or [batch, groups, state, '
                f'length] with groups dividing channels = {channels}, got '
                f'{tuple(t.shape)}')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (channels, ):
            raise ValueError(f'selective_scan: `{name}` must have shape '
                             f'[channels] = ({channels},), got '
                             f'{tuple(t.shape)}')
    if z is not None and tuple(z.shape) != (batch, channels, length):
        raise ValueError('selective_scan: `z` must have the shape of `u` '
                         f'[batch, channels, length] = {(batch, channels, length)}'
                         f', got {tuple(z.shape)}')
    return batch, channels, length, state


def _compute_dtype(*tensors) -> torch.dtype:
    """fp32, or fp64 when any input is fp64 (half/bf16 are upcast to fp32)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _as_grouped(M: Tensor) -> Tensor:
    """[b, s, l] -> [b, 1, s, l]; [b, g, s, l] stays (groups of channels)."""
    return M.unsqueeze(1) if M.dim() == 3 else M


def _prepare_delta(delta: Tensor, delta_bias: Optional[Tensor],
                   delta_softplus: bool, dtype: torch.dtype) -> Tensor:
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        # F.softplus's default threshold is 20, as in the CUDA kernel.
        delta = F.softplus(delta)
    return delta


def _finish(y: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor],
            dtype_in: torch.dtype) -> Tensor:
    """Skip term, SiLU(z) gate and cast back to the input dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_in)


def selective_scan_reference(u: Tensor,
                             delta: Tensor,
                             A: Tensor,
                             B: Tensor,
                             C: Tensor,
                             D: Optional[Tensor] = None,
                             z: Optional[Tensor] = None,
                             delta_bias: Optional[Tensor] = None,
                             delta_softplus: bool = False,
                             return_last_state: bool = False):
    """Sequential selective scan: a literal transcription of the recurrence.

    Precomputes ``exp(delta * A)`` and ``delta * B * u`` as
    [batch, channels, length, state] tensors and loops over the length,
    like mamba_ssm's ``selective_scan_ref``. Differentiable by autograd.
    See :func:`selective_scan` for the arguments.
    """
    batch, channels, length, state = _check_inputs(u, delta, A, B, C, D, z,
                                                   delta_bias)
    dtype_in = u.dtype
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    uf = u.to(dtype)
    Af = A.to(dtype)
    # Grouped view: group g serves channels [g * hpg, (g + 1) * hpg).
    Bg = _as_grouped(B.to(dtype))  # [b, g, s, l]
    Cg = _as_grouped(C.to(dtype))
    groups = Bg.shape[1]
    hpg = channels // groups
    if Cg.shape[1] != groups:  # B and C grouped differently: expand both
        groups, hpg = channels, 1
        Bg = Bg.repeat_interleave(channels // Bg.shape[1], dim=1)
        Cg = Cg.repeat_interleave(channels // Cg.shape[1], dim=1)

    delta_a = torch.exp(delta.unsqueeze(-1) * Af[:, None, :])  # [b, e, l, s]
    delta_b_u = ((delta * uf).view(batch, groups, hpg, length, 1) *
                 Bg.transpose(2, 3).unsqueeze(2)).view(
                     batch, channels, length, state)  # [b, e, l, s]
    h = uf.new_zeros((batch, channels, state))
    ys = []
    for t in range(length):
        h = delta_a[:, :, t] * h + delta_b_u[:, :, t]
        y_t = torch.einsum('bghs,bgs->bgh', h.view(batch, groups, hpg, state),
                           Cg[..., t])
        ys.append(y_t.reshape(batch, channels))
    y = torch.stack(ys, dim=2)  # [b, e, l]
    out = _finish(y, uf, D, z, dtype_in)
    return (out, h) if return_last_state else out


# --------------------------------------------------------------------------
# 'fast': time-major tiles that stay in cache, custom autograd with
# recomputation from per-tile checkpoints
# --------------------------------------------------------------------------
#
# Why not the reference layout: its per-step slices delta_a[:, :, t] of a
# [b, e, l, s] tensor are scattered (one 64-byte piece per channel), and the
# two [b, e, l, s] tensors it precomputes are freshly allocated (page faults)
# and far larger than any cache. Here the inputs are transposed once to
# time-major [l, b, e], and the sequence is cut into tiles of ``n`` steps
# (and, for wide inputs, blocks of channels) whose [n, b, s, e] working set
# fits in the per-core cache. Per tile:
#
#   a = exp(delta * A), x = delta * u * B     (two vectorised ops, reused
#                                              buffers)
#   x[t] = a[t] * x[t-1] + x[t]               (one addcmul per step over a
#                                              contiguous [b, s, e] slice;
#                                              x[-1] = state from the previous
#                                              tile)
#   y[t] = C[t] . x[t]                        (one batched matmul)
#
# The forward saves the state entering every tile (memory l / n times a
# [b, e, s] state, i.e. about state / n times the size of u). The backward
# visits the tiles in reverse, recomputes each tile's states from its
# checkpoint and runs the adjoint recurrence
#
#   lam[t] = C[t] * gy[t] + exp(delta[t+1] A) * lam[t+1]
#
# then reduces the gradients of the tile with batched matmuls. Nothing of
# size [b, e, l, s] is ever allocated. The exponentials are the reference's
# exp(delta * A) of single steps, so nothing overflows that does not in the
# sequential recurrence, and the operation order per element is the
# reference's (results agree to fp32 round-off).

_TILE_ELEMS = 1 << 16  # values in one [n, b, s, e] tile buffer
_STEP_ELEMS = 1 << 16  # at most this many values in one step's [b, s, e]


class _Plan:
    """Tile sizes for one call."""

    def __init__(self, batch, channels, length, state, groups, tile_elems,
                 step_elems):
        self.batch, self.channels, self.length = batch, channels, length
        self.state, self.groups = state, groups
        self.hpg = channels // groups
        per_channel = batch * state
        self.eb = max(1, min(self.hpg, step_elems // per_channel))
        self.n = max(1, min(length, tile_elems // (per_channel * self.eb)))

    def channel_blocks(self):
        """Yield (group, channel slice)."""
        for g in range(self.groups):
            for e0 in range(0, self.hpg, self.eb):
                e1 = min(self.hpg, e0 + self.eb)
                yield g, slice(g * self.hpg + e0, g * self.hpg + e1)

    def tiles(self):
        """Yield (index, t0, t1)."""
        for i, t0 in enumerate(range(0, self.length, self.n)):
            yield i, t0, min(self.length, t0 + self.n)

    @property
    def num_tiles(self):
        return -(-self.length // self.n)


def _time_major(x: Tensor) -> Tensor:
    """[b, e, l] -> contiguous [l, b, e]."""
    return x.permute(2, 0, 1).contiguous()


def _view(buf: Tensor, *shape) -> Tensor:
    """The first prod(shape) values of a flat buffer, as ``shape``."""
    return buf[:math.prod(shape)].view(shape)


def _tile_inputs(dT, duT, BT, At, g, es, t0, t1, abuf, xbuf):
    """a = exp(delta A) and x = delta u B of one tile, [n, b, s, eb]."""
    n, batch, state = t1 - t0, BT.shape[2], BT.shape[3]
    shape = (n, batch, state, es.stop - es.start)
    d = dT[t0:t1, :, es].unsqueeze(2)  # [n, b, 1, eb]
    a = torch.mul(d, At[:, es], out=_view(abuf, *shape)).exp_()
    x = torch.mul(duT[t0:t1, :, es].unsqueeze(2), BT[t0:t1, g].unsqueeze(-1),
                  out=_view(xbuf, *shape))
    return a, x


def _tile_states(a: Tensor, x: Tensor, h0: Tensor) -> None:
    """In place: x[t] = a[t] * x[t-1] + x[t], with x[-1] = h0."""
    av, xv = a.unbind(0), x.unbind(0)
    torch.addcmul(xv[0], av[0], h0, out=xv[0])
    for t in range(1, len(xv)):
        torch.addcmul(xv[t], av[t], xv[t - 1], out=xv[t])


def _buffers(plan, like):
    """Flat tile buffers, reused by every tile (so they stay in cache)."""
    size = plan.n * plan.batch * plan.state * plan.eb
    return like.new_empty(size), like.new_empty(size)


def _scan_forward(u, delta, A, B, C, tile_elems, step_elems, save_states):
    """Core forward. Returns y [b, e, l], last state [b, e, s], checkpoints.

    ``u``, ``delta`` [b, e, l] (delta final), ``A`` [e, s], ``B``, ``C``
    [b, g, s, l], all in the compute dtype.
    """
    batch, channels, length = u.shape
    state, groups = A.shape[1], B.shape[1]
    plan = _Plan(batch, channels, length, state, groups, tile_elems,
                 step_elems)
    dT = _time_major(delta)
    duT = _time_major(delta * u)
    BT = B.permute(3, 1, 0, 2).contiguous()  # [l, g, b, s]
    CT = C.permute(3, 1, 0, 2).contiguous()
    At = A.t().contiguous()  # [s, e]
    yT = u.new_empty(length, batch, channels)
    last = u.new_empty(batch, state, channels)
    ckpt = (u.new_empty(plan.num_tiles, batch, state, channels)
            if save_states else None)
    abuf, xbuf = _buffers(plan, u)
    for g, es in plan.channel_blocks():
        h = u.new_zeros(batch, state, es.stop - es.start)
        for i, t0, t1 in plan.tiles():
            if ckpt is not None:
                ckpt[i, :, :, es] = h
            a, x = _tile_inputs(dT, duT, BT, At, g, es, t0, t1, abuf, xbuf)
            _tile_states(a, x, h)
            h.copy_(x[-1])  # x is the reused tile buffer
            n = t1 - t0
            yv = torch.bmm(CT[t0:t1, g].reshape(n * batch, 1, state),
                           x.view(n * batch, state, -1))
            yT[t0:t1, :, es] = yv.view(n, batch, -1)
        last[:, :, es] = h
    return yT.permute(1, 2, 0), last.transpose(1, 2), ckpt


def _scan_backward(u, delta, A, B, C, gy, glast, ckpt, tile_elems,
                   step_elems):
    batch, channels, length = u.shape
    state, groups = A.shape[1], B.shape[1]
    plan = _Plan(batch, channels, length, state, groups, tile_elems,
                 step_elems)
    dT = _time_major(delta)
    uT = _time_major(u)
    duT = dT * uT
    gyT = _time_major(gy)
    BT = B.permute(3, 1, 0, 2).contiguous()  # [l, g, b, s]
    CT = C.permute(3, 1, 0, 2).contiguous()
    At = A.t().contiguous()  # [s, e]
    d_deltaT = torch.empty_like(dT)
    d_uT = torch.empty_like(dT)
    d_At = torch.zeros_like(At)
    d_BT = torch.zeros_like(BT)
    d_CT = torch.zeros_like(CT)
    abuf, xbuf = _buffers(plan, u)
    lbuf = torch.empty_like(xbuf)
    tiles = list(plan.tiles())[::-1]
    for g, es in plan.channel_blocks():
        Ab = At[:, es]
        # carry = a[t1] * lam[t1] from the tile after; at the end, d last
        if glast is not None:
            carry = glast[:, es].transpose(1, 2).contiguous()
        else:
            carry = u.new_zeros(batch, state, es.stop - es.start)
        for i, t0, t1 in tiles:
            n = t1 - t0
            nb = n * batch
            a, x = _tile_inputs(dT, duT, BT, At, g, es, t0, t1, abuf, xbuf)
            _tile_states(a, x, ckpt[i, :, :, es])
            gy_t = gyT[t0:t1, :, es]  # [n, b, eb]
            du_t = duT[t0:t1, :, es]
            B_t, C_t = BT[t0:t1, g], CT[t0:t1, g]  # [n, b, s]
            eb = gy_t.shape[-1]
            # dC[t, s] = sum_e x[t, s, e] gy[t, e]
            d_CT[t0:t1, g] += torch.bmm(x.view(nb, state, eb),
                                        gy_t.reshape(nb, eb, 1)).view(
                                            n, batch, state)
            # adjoint recurrence, backwards through the tile
            lam = torch.mul(gy_t.unsqueeze(2), C_t.unsqueeze(-1),
                            out=_view(lbuf, *x.shape))
            lv, av = lam.unbind(0), a.unbind(0)
            lv[n - 1].add_(carry)
            for t in range(n - 2, -1, -1):
                torch.addcmul(lv[t], av[t + 1], lv[t + 1], out=lv[t])
            carry = av[0] * lv[0]
            # dB[t, s] = sum_e lam delta u;  lamB[t, e] = sum_s lam B
            d_BT[t0:t1, g] += torch.bmm(lam.view(nb, state, eb),
                                        du_t.reshape(nb, eb, 1)).view(
                                            n, batch, state)
            lamB = torch.bmm(B_t.reshape(nb, 1, state),
                             lam.view(nb, state, eb)).view(n, batch, eb)
            # W = lam * (h - delta u B) = lam * a * h_prev
            bu = torch.mul(du_t.unsqueeze(2), B_t.unsqueeze(-1), out=a)
            W = x.sub_(bu).mul_(lam)
            d_t = dT[t0:t1, :, es]
            d_At[:, es] += torch.mul(W, d_t.unsqueeze(2), out=a).sum((0, 1))
            dd = torch.mul(W, Ab, out=a).sum(2)  # [n, b, eb]
            d_deltaT[t0:t1, :, es] = dd.addcmul_(uT[t0:t1, :, es], lamB)
            d_uT[t0:t1, :, es] = lamB.mul_(d_t)
    d_B = d_BT.permute(2, 1, 3, 0)
    d_C = d_CT.permute(2, 1, 3, 0)
    return (d_uT.permute(1, 2, 0), d_deltaT.permute(1, 2, 0), d_At.t(), d_B,
            d_C)


class _SelectiveScanFn(torch.autograd.Function):
    """Core scan y[t] = C[t] . h[t] (no D, z, bias, softplus) + last state.

    Inputs are already in the compute dtype, ``delta`` is final, ``B`` and
    ``C`` are grouped [b, g, s, l].
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, tile_elems, step_elems):
        save = any(ctx.needs_input_grad[:5])
        y, last, ckpt = _scan_forward(u, delta, A, B, C, tile_elems,
                                      step_elems, save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, ckpt)
        ctx.sizes = (tile_elems, step_elems)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, glast):
        u, delta, A, B, C, ckpt = ctx.saved_tensors
        if gy is None:
            gy = torch.zeros_like(u)
        grads = _scan_backward(u, delta, A, B, C, gy, glast, ckpt,
                               *ctx.sizes)
        return (*grads, None, None)


def selective_scan_fast(u: Tensor,
                        delta: Tensor,
                        A: Tensor,
                        B: Tensor,
                        C: Tensor,
                        D: Optional[Tensor] = None,
                        z: Optional[Tensor] = None,
                        delta_bias: Optional[Tensor] = None,
                        delta_softplus: bool = False,
                        return_last_state: bool = False,
                        tile_elems: int = _TILE_ELEMS,
                        step_elems: int = _STEP_ELEMS):
    """Vectorised pure-PyTorch selective scan with bounded memory.

    Same results as :func:`selective_scan_reference` up to fp32 round-off,
    differentiable through a custom backward (see the notes above).
    See :func:`selective_scan` for the arguments; additionally:

    Args:
        tile_elems (int): Values in one tile of [steps, batch, state,
            channels]; sets the number of steps per tile. Defaults to 2**16.
        step_elems (int): Maximum of batch * state * channels per step;
            wider inputs are processed in blocks of channels.
            Defaults to 2**16.
    """
    batch, channels, length, state = _check_inputs(u, delta, A, B, C, D, z,
                                                   delta_bias)
    dtype_in = u.dtype
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    uf = u.to(dtype)
    Bg = _as_grouped(B.to(dtype))
    Cg = _as_grouped(C.to(dtype))
    if Bg.shape[1] != Cg.shape[1]:  # differently grouped: per channel
        Bg = Bg.repeat_interleave(channels // Bg.shape[1], dim=1)
        Cg = Cg.repeat_interleave(channels // Cg.shape[1], dim=1)
    y, last = _SelectiveScanFn.apply(uf, delta, A.to(dtype), Bg, Cg,
                                     tile_elems, step_elems)
    out = _finish(y, uf, D, z, dtype_in)
    return (out, last) if return_last_state else out


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False,
                   return_last_state: bool = False,
                   impl: str = 'auto') -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan with the arguments of mamba_ssm's ``selective_scan_fn``.

    Computes in fp32 (fp64 if an input is fp64) and returns the output in
    ``u``'s dtype, like the CUDA kernel.

    Args:
        u (Tensor): Input, [batch, channels, length].
        delta (Tensor): Step sizes before ``delta_bias`` and softplus,
            [batch, channels, length].
        A (Tensor): Real state matrix (diagonal per channel),
            [channels, state]. VideoMamba passes ``-exp(A_log)``.
        B (Tensor): Input-dependent input matrix, [batch, state, length], or
            grouped [batch, groups, state, length] where each group serves
            ``channels // groups`` consecutive channels.
        C (Tensor): Input-dependent output matrix, same shapes as ``B``.
        D (Tensor, optional): Skip weights, [channels]. Defaults to None.
        z (Tensor, optional): Gate, [batch, channels, length]; the output is
            multiplied by ``silu(z)``. Defaults to None.
        delta_bias (Tensor, optional): Added to ``delta`` before the softplus,
            [channels]. Defaults to None.
        delta_softplus (bool): Apply softplus (threshold 20) to
            ``delta + delta_bias``. Defaults to False.
        return_last_state (bool): Also return the state after the last step,
            [batch, channels, state] (in the compute dtype). Defaults to False.
        impl (str): ``'reference'`` (sequential loop), ``'fast'``
            (vectorised pure PyTorch) or ``'auto'`` (mamba_ssm's CUDA kernel
            when importable and the tensors are on CUDA, else ``'fast'``).
            Defaults to ``'auto'``.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` [batch, channels, length], and
        ``last_state`` when ``return_last_state``.
    """
    if impl not in IMPLS:
        raise ValueError(f'selective_scan: impl must be one of {IMPLS}, '
                         f'got {impl!r}')
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus,
            return_last_state)
    if impl == 'reference':
        return selective_scan_reference(*args)
    if impl == 'auto' and u.is_cuda:
        fn = _mamba_ssm_scan_fn()
        if fn is not None:
            _check_inputs(u, delta, A, B, C, D, z, delta_bias)
            return fn(*args)
    return selective_scan_fast(*args)
