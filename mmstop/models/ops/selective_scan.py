# Copyright (c) mmstop contributors. All rights reserved.
"""Selective scan (the S6 recurrence of Mamba / VideoMamba) and its dispatch.

The recurrence, per batch element ``b``, channel ``e`` and state index
``s``::

    delta[b,e,t] = softplus(delta_raw[b,e,t] + delta_bias[e])  # optional
    h[b,e,s] = 0 before t = 0; then for t = 0 .. length - 1:
    h[b,e,s] = exp(delta[b,e,t] * A[e,s]) * h[b,e,s]
               + delta[b,e,t] * B[b,s,t] * u[b,e,t]     # Euler B, not ZOH
    y[b,e,t] = sum_s C[b,s,t] * h[b,e,s] + D[e] * u[b,e,t]
    out[b,e,t] = y[b,e,t] * silu(z[b,e,t])               # optional gate

Shapes and meaning follow ``mamba_ssm.ops.selective_scan_interface
.selective_scan_fn``. Implementations:

* ``'reference'``: the literal sequential loop (autograd), the yardstick.
* ``'fast'``: vectorised pure PyTorch tuned for CPUs (this file).
* ``'triton'``: Triton kernels for GPUs, forward and backward
  (:mod:`.selective_scan_triton`); no CUDA compilation needed.
* ``'mamba_ssm'``: mamba_ssm's compiled CUDA kernel, when importable.
* ``'auto'``: CUDA tensors -> ``'mamba_ssm'`` if importable, else
  ``'triton'``; other devices -> ``'fast'``. The environment variable
  ``MMSTOP_SCAN_IMPL`` replaces ``'auto'`` by a fixed choice (an explicit
  ``impl`` argument, e.g. a config's ``scan_impl``, still wins). The
  implementation chosen is logged once per (request, device type).

Written from the recurrence above; shares no code with mamba_ssm.
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..utils.recording import operators_recorded

IMPLS = ('auto', 'reference', 'fast', 'triton', 'mamba_ssm')
#: environment variable that replaces ``impl='auto'`` by a fixed choice
IMPL_ENV = 'MMSTOP_SCAN_IMPL'


@functools.lru_cache(maxsize=None)
def _mamba_ssm_scan_fn():
    """Return mamba_ssm's CUDA ``selective_scan_fn`` or ``None`` (cached).

    mamba_ssm is optional: the package being absent or its compiled
    extension failing to load (``ImportError``/``OSError``, e.g. built for
    another torch) means "not available"; the reason is logged once. Any
    other exception is a bug and propagates.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import \
            selective_scan_fn  # noqa: F401
    except (ImportError, OSError) as exc:
        _log_once(f'mamba_ssm selective scan not available: {exc!r}', 'DEBUG')
        return None
    return selective_scan_fn


@functools.lru_cache(maxsize=None)
def _log_once(message: str, level: str = 'INFO') -> None:
    import logging
    print_log(message, logger='current', level=getattr(logging, level))


def resolve_impl(impl: str, device: Union[str, torch.device]) -> str:
    """The implementation :func:`selective_scan` runs for ``impl``.

    Args:
        impl (str): One of ``IMPLS``.
        device (str | torch.device): Device of the inputs.

    Returns:
        str: ``'reference'``, ``'fast'``, ``'triton'`` or ``'mamba_ssm'``.

    Raises:
        ValueError: ``impl`` or ``$MMSTOP_SCAN_IMPL`` is not one of
            ``IMPLS``.
        RuntimeError: the implementation cannot run here (it never falls
            back silently), e.g. ``'mamba_ssm'`` not importable, or no Triton
            for CUDA tensors under ``'auto'``.
    """
    if impl not in IMPLS:
        raise ValueError(f'selective_scan: impl must be one of {IMPLS}, '
                         f'got {impl!r}')
    device = torch.device(device)
    requested = impl
    if impl == 'auto' and os.environ.get(IMPL_ENV):
        impl = os.environ[IMPL_ENV]
        if impl not in IMPLS:
            raise ValueError(f'selective_scan: ${IMPL_ENV} must be one of '
                             f'{IMPLS}, got {impl!r}')
        requested = f'{IMPL_ENV}={impl}'
    if impl == 'auto':
        if device.type == 'cuda':
            impl = ('mamba_ssm'
                    if _mamba_ssm_scan_fn() is not None else 'triton')
        else:
            impl = 'fast'
    if impl == 'mamba_ssm' and _mamba_ssm_scan_fn() is None:
        raise RuntimeError(
            'selective_scan: impl "mamba_ssm" requested but '
            '`mamba_ssm.ops.selective_scan_interface` cannot be imported '
            "(install mamba_ssm, or use impl='triton' / 'auto')")
    if impl == 'triton':
        try:
            from .selective_scan_triton import triton_usable
        except ImportError as exc:
            raise RuntimeError(
                f'selective_scan: impl "triton" (chosen for {requested!r} on '
                f'{device}) needs the `triton` package: {exc}. Install '
                f"triton, or set impl='fast' explicitly (a per-step loop, "
                f'slow on GPUs)') from exc
        reason = triton_usable(device)
        if reason is not None:
            raise RuntimeError(f'selective_scan(impl="triton"): {reason}')
    _log_once(f'selective_scan: {requested!r} on {device.type} -> {impl!r}')
    return impl


def _check_inputs(u, delta, A, B, C, D, z,
                  delta_bias) -> Tuple[int, int, int, int]:
    """Validate shapes; return ``(batch, channels, length, state)``."""
    for name, t in (('u', u), ('delta', delta), ('A', A), ('B', B), ('C', C),
                    ('D', D), ('z', z), ('delta_bias', delta_bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f'selective_scan: `{name}` must be a torch.Tensor '
                            f'or None, got {type(t).__name__}')
    if u.dim() != 3:
        raise ValueError('selective_scan: `u` must have shape '
                         f'[batch, channels, length], got {tuple(u.shape)}')
    batch, channels, length = u.shape
    bel = (batch, channels, length)
    if tuple(delta.shape) != bel:
        raise ValueError('selective_scan: `delta` must have the shape of `u` '
                         f'[batch, channels, length] = {bel}, got '
                         f'{tuple(delta.shape)}')
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
            ok = (
                t.shape[0] == batch and groups > 0 and channels % groups == 0
                and tuple(t.shape[2:]) == (state, length))
        else:
            ok = False
        if not ok:
            raise ValueError(
                f'selective_scan: `{name}` must have shape [batch, state, '
                f'length] = {(batch, state, length)} or [batch, groups, '
                f'state, length] with groups dividing channels = {channels}, '
                f'got {tuple(t.shape)}')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (channels, ):
            raise ValueError(f'selective_scan: `{name}` must have shape '
                             f'[channels] = ({channels},), got '
                             f'{tuple(t.shape)}')
    if z is not None and tuple(z.shape) != bel:
        raise ValueError('selective_scan: `z` must have the shape of `u` '
                         f'[batch, channels, length] = {bel}, got '
                         f'{tuple(z.shape)}')
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
        y = torch.addcmul(y, u, D.to(y.dtype)[:, None])
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
    delta_b_u = ((delta * uf).reshape(batch, groups, hpg, length, 1) *
                 Bg.transpose(2, 3).unsqueeze(2)).reshape(
                     batch, channels, length, state)  # [b, e, l, s]
    # unbind (rather than indexing [:, :, t] in the loop) gives the same
    # views, but autograd then stacks the per-step gradients once instead
    # of scattering each step into a fresh [b, e, l, s] zero tensor.
    a_steps, bu_steps = delta_a.unbind(2), delta_b_u.unbind(2)
    c_steps = Cg.unbind(3)  # [b, g, s] per step
    h = uf.new_zeros((batch, channels, state))
    ys = []
    for t in range(length):
        h = a_steps[t] * h + bu_steps[t]
        y_t = torch.einsum('bghs,bgs->bgh', h.view(batch, groups, hpg, state),
                           c_steps[t])
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
# and far larger than any cache. Here the channels are cut into blocks; a
# block's delta and delta * u are copied once to time-major [l, b, eb], and
# its sequence is cut into tiles of ``n`` steps whose [n, b, s, eb] working
# set fits in the per-core cache. Per tile:
#
#   a = exp(delta * A), x = delta * u * B     (two vectorised ops, reused
#                                              buffers)
#   x[t] = a[t] * x[t-1] + x[t]               (one addcmul per step over a
#                                              contiguous [b, s, eb] slice;
#                                              x[-1] = state from the previous
#                                              tile)
#   y[t] = C[t] . x[t]                        (one batched matmul)
#
# The forward saves the state entering every tile (memory l / n times a
# [b, e, s] state, i.e. about state / n times the size of u) and the
# time-major delta and delta * u. The backward visits the tiles in reverse,
# recomputes each tile's states from its checkpoint and runs the adjoint
# recurrence
#
#   lam[t] = C[t] * gy[t] + exp(delta[t+1] A) * lam[t+1]
#
# then reduces the gradients of the tile with batched matmuls. Nothing of
# size [b, e, l, s] is ever allocated. The exponentials are the reference's
# exp(delta * A) of single steps, so nothing overflows that does not in the
# sequential recurrence, and the operation order per element is the
# reference's (results agree to fp32 round-off).
#
# Channel blocks are independent. On CPU, large inputs are spread over
# torch.get_num_threads() Python threads (ATen releases the GIL) with every
# op kept below ATen's parallel grain size, rather than relying on OpenMP
# inside ops: the per-step ops are too small for OpenMP to split anyway, and
# on a busy 2-core machine OpenMP barriers stalled the 2-thread run by 5-10x.

_TILE_ELEMS = 1 << 17  # values in one [n, b, s, e] tile buffer
_STEP_ELEMS = 1 << 16  # at most this many values in one step's [b, s, e]
# ATen runs an elementwise op on one thread below this many values
# (at::internal::GRAIN_SIZE); worker threads keep every op below it.
_SERIAL_ELEMS = 1 << 15
_MIN_WORKER_ELEMS = 1 << 21  # b * e * l * s per worker thread


class _Block:
    """One block of channels (within one group) and its tiling in time.

    Per-tile views are made once per block with ``split`` (one call for all
    tiles), because at these sizes Python-side slicing costs about as much
    as the arithmetic.
    """

    def __init__(self, g, es, batch, length, state, n, piece_elems):
        self.g, self.es = g, es
        self.eb = es.stop - es.start
        self.batch, self.length, self.state, self.n = batch, length, state, n
        self.num_tiles = -(-length // n)
        # steps per piece when copying between [b, e, l] and time-major
        self.piece = max(1, piece_elems // (batch * self.eb))

    def split(self, x: Tensor, per_step: int = 1):
        """Tiles of a time-major tensor (``per_step`` rows per step)."""
        return x.split(self.n * per_step, 0)

    def buffer(self, like: Tensor, extra_steps: int = 0):
        """A reused tile buffer [n + extra, b, s, eb]: its view per tile."""
        per_step = self.batch * self.state * self.eb
        flat = like.new_empty((self.n + extra_steps) * per_step)
        n_last = self.length - (self.num_tiles - 1) * self.n + extra_steps
        full = flat.view(self.n + extra_steps, self.batch, self.state, self.eb)
        last = flat[:n_last * per_step].view(n_last, self.batch, self.state,
                                             self.eb)
        return [full] * (self.num_tiles - 1) + [last]

    def pieces(self, *tensors):
        """Split [l, ...] tensors into pieces of ``self.piece`` steps."""
        return zip(*(t.split(self.piece, 0) for t in tensors))


def _plan(u: Tensor, state: int, groups: int, tile_elems: int,
          step_elems: int):
    """Channel blocks, steps per tile and worker threads for one call.

    On CPU, large problems are split over up to ``torch.get_num_threads()``
    Python worker threads, one block of channels at a time, with every op
    small enough to run single-threaded in ATen: the per-step ops are too
    small to be split by OpenMP anyway, and independent threads do not
    stall on OpenMP barriers when the machine is busy.
    """
    batch, channels, length = u.shape
    hpg = channels // groups
    per_channel = batch * state
    eb = max(1, min(hpg, step_elems // per_channel))
    workers = 1
    if u.device.type == 'cpu':
        work = batch * channels * length * state
        workers = max(1, min(torch.get_num_threads(),
                             work // _MIN_WORKER_ELEMS))
    piece_elems = _SERIAL_ELEMS if workers > 1 else tile_elems
    if workers > 1:
        # at least `workers` blocks, and tiles of >= 2 steps within the
        # single-threaded op size
        cap = max(1, _SERIAL_ELEMS // (2 * per_channel))
        per_group = max(-(-hpg // min(eb, cap)), -(-workers // groups))
        eb = -(-hpg // per_group)
        tile_elems = min(tile_elems, _SERIAL_ELEMS)
    n = max(1, min(length, tile_elems // (per_channel * eb)))
    blocks = [
        _Block(g, slice(g * hpg + e0, g * hpg + min(hpg, e0 + eb)), batch,
               length, state, n, piece_elems) for g in range(groups)
        for e0 in range(0, hpg, eb)
    ]
    return blocks, min(workers, len(blocks))


def _run_blocks(fn, blocks, workers):
    """``[fn(block) for block in blocks]``, on worker threads if > 1."""

    def call(block):
        with torch.no_grad():  # grad mode is thread-local
            return fn(block)

    if workers <= 1:
        return [call(b) for b in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(call, blocks))


def _group_major(M: Tensor) -> Tensor:
    """B or C [b, g, s, l] -> contiguous [g, l, b, s] (small)."""
    return M.permute(1, 3, 0, 2).contiguous()


def _scan_forward(u, delta, A, B, C, tile_elems, step_elems, save_states):
    """Core forward. Returns y [b, e, l], last state [b, e, s], saved.

    ``u``, ``delta`` [b, e, l] (delta final), ``A`` [e, s], ``B``, ``C``
    [b, g, s, l], all in the compute dtype. With ``save_states``, ``saved``
    holds per channel block the states entering every tile
    [tiles, b, s, eb] and the time-major delta and delta * u [l, b, eb].
    """
    batch, channels, length = u.shape
    state, groups = A.shape[1], B.shape[1]
    blocks, workers = _plan(u, state, groups, tile_elems, step_elems)
    BG, CG = _group_major(B), _group_major(C)  # [g, l, b, s]
    At = A.t().contiguous()  # [s, e]
    y = u.new_empty(batch, channels, length)
    last = u.new_empty(batch, state, channels)

    def run(blk):
        es, eb, g = blk.es, blk.eb, blk.g
        # time-major delta and delta * u of this block, [l, b, eb]
        dT = u.new_empty(length, batch, eb)
        duT = torch.empty_like(dT)
        for d_p, du_p, ds_p, us_p in blk.pieces(dT, duT,
                                                delta[:, es].permute(2, 0, 1),
                                                u[:, es].permute(2, 0, 1)):
            torch.mul(d_p.copy_(ds_p), us_p, out=du_p)
        yT = torch.empty_like(dT)
        Ab = At[:, es]
        d_t = blk.split(dT.unsqueeze(2))  # [n, b, 1, eb]
        du_t = blk.split(duT.unsqueeze(2))
        B_t = blk.split(BG[g].unsqueeze(-1))  # [n, b, s, 1]
        C_t = blk.split(CG[g].view(length * batch, 1, state), batch)
        y_t = blk.split(yT.view(length * batch, 1, eb), batch)
        ckpt = (
            u.new_empty(blk.num_tiles, batch, state, eb)
            if save_states else None)
        a_b = blk.buffer(u)
        x_b = (blk.buffer(u), blk.buffer(u))  # ping-pong
        h = u.new_zeros(batch, state, eb)
        for i in range(blk.num_tiles):
            if ckpt is not None:
                ckpt[i].copy_(h)
            a = torch.mul(d_t[i], Ab, out=a_b[i]).exp_()
            x = torch.mul(du_t[i], B_t[i], out=x_b[i % 2][i])
            av, xv = a.unbind(0), x.unbind(0)
            torch.addcmul(xv[0], av[0], h, out=xv[0])
            for t in range(1, len(xv)):
                torch.addcmul(xv[t], av[t], xv[t - 1], out=xv[t])
            h = xv[-1]  # valid until the buffer after next is written
            y_i = y_t[i]
            torch.bmm(C_t[i], x.view(y_i.shape[0], state, eb), out=y_i)
        last[:, :, es] = h
        for y_p, yT_p in blk.pieces(y[:, es].permute(2, 0, 1), yT):
            y_p.copy_(yT_p)
        return (ckpt, dT, duT) if save_states else None

    saved = _run_blocks(run, blocks, workers)
    return y, last.transpose(1, 2), saved if save_states else None


def _scan_backward(u, delta, A, B, C, gy, glast, saved, tile_elems,
                   step_elems):
    """Core backward: gradients of u, delta, A, B, C (shapes as inputs)."""
    batch, channels, length = u.shape
    state, groups = A.shape[1], B.shape[1]
    blocks, workers = _plan(u, state, groups, tile_elems, step_elems)
    BG, CG = _group_major(B), _group_major(C)  # [g, l, b, s]
    At = A.t().contiguous()  # [s, e]
    d_u = torch.empty_like(u)
    d_delta = torch.empty_like(u)
    d_At = torch.empty_like(At)
    lb = length * batch

    def run(job):
        blk, (ckpt, dT, duT) = job
        es, eb, g = blk.es, blk.eb, blk.g
        gyT = torch.empty_like(dT)
        for gy_p, gs_p in blk.pieces(gyT, gy[:, es].permute(2, 0, 1)):
            gy_p.copy_(gs_p)
        # per step: dd = sum_s W A (the part of d delta through
        # exp(delta A)) and lamB = sum_s lam B; then d delta = dd + u lamB
        # and d u = delta lamB
        ddT, lamBT = torch.empty_like(dT), torch.empty_like(dT)
        d_BT = u.new_zeros(length, batch, state)
        d_CT = torch.zeros_like(d_BT)
        Ab = At[:, es]
        d_t = blk.split(dT.unsqueeze(2))  # [n, b, 1, eb]
        du_t = blk.split(duT.unsqueeze(2))
        du_r = blk.split(duT.view(lb, 1, eb), batch)
        gy_t = blk.split(gyT.unsqueeze(2))
        gy_r = blk.split(gyT.view(lb, 1, eb), batch)
        dd_t = blk.split(ddT)  # [n, b, eb]
        lamB_r = blk.split(lamBT.view(lb, 1, eb), batch)
        B_t = blk.split(BG[g].unsqueeze(-1))  # [n, b, s, 1]
        B_r = blk.split(BG[g].view(lb, 1, state), batch)
        C_t = blk.split(CG[g].unsqueeze(-1))
        dB_r = blk.split(d_BT.view(lb, 1, state), batch)
        dC_r = blk.split(d_CT.view(lb, 1, state), batch)
        ck_t = ckpt.unbind(0)
        a_b = blk.buffer(u)
        xe_b = blk.buffer(u, extra_steps=1)  # [h0, states...]
        l_b = blk.buffer(u)
        acc_b = blk.buffer(u)  # sum over tiles of W * delta
        acc_b[0].zero_()
        # carry = exp(delta[t1] A) * lam[t1] from the next tile (d last
        # state for the last tile)
        if glast is not None:
            carry = glast[:, es].transpose(1, 2).contiguous()
        else:
            carry = u.new_zeros(batch, state, eb)
        for i in range(blk.num_tiles - 1, -1, -1):
            a = torch.mul(d_t[i], Ab, out=a_b[i]).exp_()
            xe = xe_b[i]
            n = xe.shape[0] - 1
            nb = n * batch
            xe[0].copy_(ck_t[i])
            x = torch.mul(du_t[i], B_t[i], out=xe[1:])
            av, xv = a.unbind(0), xe.unbind(0)
            for t in range(n):
                torch.addcmul(xv[t + 1], av[t], xv[t], out=xv[t + 1])
            # dC[t, s] += sum_e gy[t, e] h[t, s, e]  (row-vector products
            # are much faster in bmm than matrix-vector ones)
            x_m = x.view(nb, state, eb)
            dC_r[i].baddbmm_(gy_r[i], x_m.transpose(1, 2))
            # adjoint: lam[t] = C[t] gy[t] + a[t+1] lam[t+1]
            lam = torch.mul(gy_t[i], C_t[i], out=l_b[i])
            lv = lam.unbind(0)
            lv[n - 1].add_(carry)
            for t in range(n - 2, -1, -1):
                torch.addcmul(lv[t], av[t + 1], lv[t + 1], out=lv[t])
            carry = av[0] * lv[0]
            # dB[t, s] += sum_e delta u lam;  lamB[t, e] = sum_s B lam
            lam_m = lam.view(nb, state, eb)
            dB_r[i].baddbmm_(du_r[i], lam_m.transpose(1, 2))
            torch.bmm(B_r[i], lam_m, out=lamB_r[i])
            # W = lam * d h / d a = lam * a * h_prev
            W = torch.mul(a, xe[:n], out=a).mul_(lam)
            acc_b[i].addcmul_(W, d_t[i])
            torch.sum(W.mul_(Ab), 2, out=dd_t[i])
        d_At[:, es] = acc_b[0].sum((0, 1))
        for du_p, dd_p, d_p, u_p, lam_p, ddT_p in blk.pieces(
                d_u[:, es].permute(2, 0, 1), d_delta[:, es].permute(2, 0, 1),
                delta[:, es].permute(2, 0, 1), u[:, es].permute(2, 0, 1),
                lamBT, ddT):
            torch.mul(d_p, lam_p, out=du_p)
            torch.addcmul(ddT_p, u_p, lam_p, out=dd_p)
        return g, d_BT, d_CT

    parts = _run_blocks(run, list(zip(blocks, saved)), workers)
    d_BG = torch.zeros_like(BG)  # [g, l, b, s]
    d_CG = torch.zeros_like(CG)
    for g, d_BT, d_CT in parts:
        d_BG[g] += d_BT
        d_CG[g] += d_CT
    return (d_u, d_delta, d_At.t(), d_BG.permute(2, 0, 3,
                                                 1), d_CG.permute(2, 0, 3, 1))


class _SelectiveScanFn(torch.autograd.Function):
    """Core scan y[t] = C[t] . h[t] (no D, z, bias, softplus) + last state.

    Inputs are already in the compute dtype, ``delta`` is final, ``B`` and
    ``C`` are grouped [b, g, s, l].
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, tile_elems, step_elems):
        save = any(ctx.needs_input_grad[:5])
        y, last, saved = _scan_forward(u.detach(), delta.detach(), A.detach(),
                                       B.detach(), C.detach(), tile_elems,
                                       step_elems, save)
        if save:  # per block: checkpoints, time-major delta, delta * u
            ctx.save_for_backward(u, delta, A, B, C,
                                  *[t for blk in saved for t in blk])
        ctx.sizes = (tile_elems, step_elems)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, glast):
        u, delta, A, B, C, *flat = ctx.saved_tensors
        saved = [flat[i:i + 3] for i in range(0, len(flat), 3)]
        if gy is None:
            gy = torch.zeros_like(u)
        grads = _scan_backward(u, delta, A, B, C, gy.contiguous(), glast,
                               saved, *ctx.sizes)
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
            channels]; sets the number of steps per tile. Defaults to 2**17.
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
            (vectorised pure PyTorch, for CPUs), ``'triton'`` (Triton
            kernels, for GPUs), ``'mamba_ssm'`` (its CUDA kernel) or
            ``'auto'`` (see the module doc: CUDA -> mamba_ssm if importable,
            else Triton; otherwise ``'fast'``; ``$MMSTOP_SCAN_IMPL``
            replaces it). Defaults to ``'auto'``.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` [batch, channels, length], and
        ``last_state`` when ``return_last_state``.
    """
    if (operators_recorded()
            or u.device.type == 'meta') and not return_last_state:
        # one operator for FLOP counters (see _traced_selective_scan)
        _check_inputs(u, delta, A, B, C, D, z, delta_bias)
        return torch.ops.mmstop.selective_scan(u, delta, A, B, C, D, z,
                                               delta_bias, delta_softplus,
                                               impl)
    return _dispatch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                     return_last_state, impl)


def _dispatch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
              return_last_state, impl):
    """Run the implementation ``impl`` resolves to (see
    :func:`selective_scan`)."""
    impl = resolve_impl(impl, u.device)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus,
            return_last_state)
    if impl == 'reference':
        return selective_scan_reference(*args)
    if impl == 'fast':
        return selective_scan_fast(*args)
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if impl == 'triton':
        from .selective_scan_triton import selective_scan_triton
        return selective_scan_triton(*args)
    return _mamba_ssm_scan_fn()(*args)


@torch.library.custom_op('mmstop::selective_scan', mutates_args=())
def _traced_selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                           C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
                           delta_bias: Optional[Tensor], delta_softplus: bool,
                           impl: str) -> Tensor:
    """:func:`selective_scan` as the operator ``mmstop::selective_scan``.

    :func:`selective_scan` calls it while the operators are recorded
    (:func:`~mmstop.models.utils.operators_recorded`: FLOP counters such as
    MMEngine's ``get_model_complexity_info``, MMAction2's ``get_flops.py``
    and :class:`mmstop.utils.flops.MACCounter`) and on the ``meta`` device:
    a trace then holds one ``mmstop::selective_scan`` node with the shapes
    of its inputs, which :mod:`mmstop.utils.flops` counts, instead of the
    hundreds of steps of the implementation (which FLOP counters cannot
    count or reject). It has no autograd formula: recorded models only run
    forward. On the ``meta`` device it only computes the output shape.
    """
    return _dispatch(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                     False, impl)


@_traced_selective_scan.register_fake
def _traced_selective_scan_fake(u, delta, A, B, C, D, z, delta_bias,
                                delta_softplus, impl):
    return torch.empty_like(u, memory_format=torch.contiguous_format)
