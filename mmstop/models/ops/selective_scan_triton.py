# Copyright (c) mmstop contributors. All rights reserved.
"""Selective scan in Triton: forward and backward, no CUDA compilation.

Same arguments and meaning as :func:`mmstop.models.ops.selective_scan`
(mamba_ssm's ``selective_scan_fn``): ``u``, ``delta``, ``z`` [batch,
channels, length]; real ``A`` [channels, state]; ``B``, ``C`` [batch, state,
length] or grouped [batch, groups, state, length]; optional ``D``, ``z``,
``delta_bias`` and softplus. The recurrence is documented in
:mod:`mmstop.models.ops.selective_scan`.

How the kernels work
--------------------
One program handles one batch element and a block of ``block_e`` channels
and walks the sequence in chunks of ``chunk`` steps. Inside a chunk, for each
state index ``s``, the linear recurrence ``h[t] = a[t] h[t-1] + x[t]`` with
``a = exp(delta A[:, s])`` and ``x = delta u B[s]`` is a parallel prefix scan
(``tl.associative_scan`` with the combine ``(a1, x1), (a2, x2) -> (a1 a2,
a2 x1 + x2)``) over a [block_e, chunk] tile, started from the state carried
out of the previous chunk (kept in registers as a [block_e, state] tile).
``y += C[s] h`` accumulates over ``s``; ``D`` and the SiLU gate are applied
once per chunk. State and accumulation are fp32 for fp32, bf16 and fp16
inputs (fp64 for fp64 inputs).

The backward kernel recomputes everything; it never reads a
[batch, channels, length, state] tensor because none is ever stored. A
forward pass of the same kernel first records the state entering every
chunk (a [batch, channels, chunks, state] fp32 tensor that lives only during
the backward of one call). The backward then visits the chunks in reverse
and, per state index, recomputes the chunk's states from its checkpoint and
runs the adjoint recurrence as a reverse prefix scan::

    lam[t] = C[t] gy[t] + a[t + 1] lam[t + 1]       (gy: gradient of y)

from which, with ``a[t] h[t - 1] = h[t] - x[t]``::

    d delta[t] += lam[t] ((h[t] - x[t]) A + u[t] B[t])
    d u[t]     += lam[t] delta[t] B[t]
    d A        += sum_t lam[t] (h[t] - x[t]) delta[t]
    d B[t]     += sum_channels lam[t] delta[t] u[t]
    d C[t]     += sum_channels gy[t] h[t]

The sums over channels of ``d B`` and ``d C`` are written per channel block
and reduced afterwards with one ``sum`` (no atomics, so the results are
deterministic); ``d A``, ``d D`` and ``d delta_bias`` are written per batch
element and summed the same way.

Memory: the forward keeps nothing beyond its inputs for the backward. The
backward's temporaries, freed when it returns, are the chunk states
(``4 * batch * channels * ceil(length / chunk) * state`` bytes) and the
per-block ``d B`` / ``d C`` (``2 * 4 * batch * ceil(channels / block_e) *
state * length`` bytes): 59 MB and 235 MB for one VideoMamba-M scan at
batch 32 (1,152 channels, 1,593 steps, state 16), against 235 MB for ``u``
alone in fp32.

Triton must be importable. On CUDA tensors the kernels are compiled; on CPU
tensors they only run under Triton's interpreter (``TRITON_INTERPRET=1`` set
before ``triton`` is first imported), which the tests use.
"""
import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['selective_scan_triton', 'triton_usable']

#: default steps per chunk and channels per program (powers of two)
DEFAULT_CHUNK = 64
DEFAULT_BLOCK_E = 32


def interpreter_enabled() -> bool:
    """Whether Triton runs its interpreter (kernels on CPU tensors)."""
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def triton_usable(device: torch.device) -> Optional[str]:
    """``None`` if the kernels can run on ``device``, else the reason."""
    device = torch.device(device)
    if device.type == 'cuda':
        return None
    if device.type == 'cpu' and interpreter_enabled():
        return None
    return (f'the Triton selective scan runs on CUDA tensors (or on CPU '
            f'tensors under TRITON_INTERPRET=1 set before triton is '
            f'imported); got tensors on {device}')


@triton.jit
def _combine(a1, x1, a2, x2):
    """Compose two steps of h -> a h + x (first (a1, x1), then (a2, x2))."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _column(tile, cols, s):
    """Column ``s`` of a [rows, cols] register tile, as a [rows] vector."""
    return tl.sum(tl.where(cols[None, :] == s, tile, 0.), 1)


@triton.jit
def _log1p(w):
    """Accurate log(1 + w) for w >= 0 (Kahan's trick; no tl.log1p)."""
    v = 1. + w
    return tl.where(v == 1., w, tl.log(v) * (w / (v - 1.)))


@triton.jit
def _load_delta(delta_ptr, bias, t, offs_e, mask, stride_e, stride_l,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                ACC: tl.constexpr):
    """Final step sizes of a [block_e, chunk] tile (0 outside ``mask``)."""
    raw = tl.load(
        delta_ptr + offs_e[:, None] * stride_e + t[None, :] * stride_l,
        mask=mask,
        other=0.).to(ACC)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        # threshold 20, as torch's softplus and mamba_ssm's kernel
        dt = tl.where(raw <= 20., _log1p(tl.exp(raw)), raw)
    return tl.where(mask, dt, 0.), raw


@triton.jit
def _scan_fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr,
                     bias_ptr, out_ptr, last_ptr, ckpt_ptr, E, L, S, CPG,
                     NUM_CHUNKS, su_b, su_e, su_l, sd_b, sd_e, sd_l, sA_e,
                     sA_s, sB_b, sB_g, sB_s, sB_l, sC_b, sC_g, sC_s, sC_l,
                     sz_b, sz_e, sz_l, so_b, so_e, so_l, HAS_D: tl.constexpr,
                     HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, WRITE_OUT: tl.constexpr,
                     WRITE_LAST: tl.constexpr, WRITE_CKPT: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                     BLOCK_S: tl.constexpr, CHUNK: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_e = tl.program_id(1)
    offs_e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_mask = offs_e < E
    cols = tl.arange(0, BLOCK_S)
    s_mask = cols < S
    group = (pid_e * BLOCK_E) // CPG  # a block never straddles two groups
    steps = tl.arange(0, CHUNK)

    u_ptr += pid_b * su_b
    delta_ptr += pid_b * sd_b
    B_ptr += pid_b * sB_b + group * sB_g
    C_ptr += pid_b * sC_b + group * sC_g
    z_ptr += pid_b * sz_b
    out_ptr += pid_b * so_b
    bias = tl.zeros([BLOCK_E], dtype=ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_e, mask=e_mask, other=0.).to(ACC)
    d_skip = tl.zeros([BLOCK_E], dtype=ACC)
    if HAS_D:
        d_skip = tl.load(D_ptr + offs_e, mask=e_mask, other=0.).to(ACC)
    # ckpt / last: contiguous [batch, E, chunks, S] / [batch, E, S] (ACC)
    ck_rows = (pid_b * E + offs_e) * NUM_CHUNKS * S
    state = tl.zeros([BLOCK_E, BLOCK_S], dtype=ACC)
    for c in range(0, NUM_CHUNKS):
        if WRITE_CKPT:
            tl.store(
                ckpt_ptr + ck_rows[:, None] + c * S + cols[None, :],
                state,
                mask=e_mask[:, None] & s_mask[None, :])
        t = c * CHUNK + steps
        t_mask = t < L
        mask = e_mask[:, None] & t_mask[None, :]
        dt, _ = _load_delta(delta_ptr, bias, t, offs_e, mask, sd_e, sd_l,
                            HAS_BIAS, SOFTPLUS, ACC)
        u = tl.load(
            u_ptr + offs_e[:, None] * su_e + t[None, :] * su_l,
            mask=mask,
            other=0.).to(ACC)
        dtu = dt * u
        y = tl.zeros([BLOCK_E, CHUNK], dtype=ACC)
        for s in range(0, S):
            A_s = tl.load(
                A_ptr + offs_e * sA_e + s * sA_s, mask=e_mask,
                other=0.).to(ACC)
            B_s = tl.load(
                B_ptr + s * sB_s + t * sB_l, mask=t_mask, other=0.).to(ACC)
            a = tl.exp(dt * A_s[:, None])
            x = dtu * B_s[None, :]
            a_cum, x_cum = tl.associative_scan((a, x), 1, _combine)
            h = x_cum + a_cum * _column(state, cols, s)[:, None]
            if WRITE_OUT:
                C_s = tl.load(
                    C_ptr + s * sC_s + t * sC_l, mask=t_mask, other=0.).to(ACC)
                y += h * C_s[None, :]
            # outside the sequence a = 1 and x = 0: the last column is the
            # state after the chunk's last valid step
            h_end = _column(h, steps, CHUNK - 1)
            state = tl.where(cols[None, :] == s, h_end[:, None], state)
        if WRITE_OUT:
            if HAS_D:
                y += u * d_skip[:, None]
            if HAS_Z:
                z = tl.load(
                    z_ptr + offs_e[:, None] * sz_e + t[None, :] * sz_l,
                    mask=mask,
                    other=0.).to(ACC)
                y = y * z * tl.sigmoid(z)
            tl.store(
                out_ptr + offs_e[:, None] * so_e + t[None, :] * so_l,
                y.to(out_ptr.dtype.element_ty),
                mask=mask)
    if WRITE_LAST:
        last_rows = (pid_b * E + offs_e) * S
        tl.store(
            last_ptr + last_rows[:, None] + cols[None, :],
            state,
            mask=e_mask[:, None] & s_mask[None, :])


@triton.jit
def _scan_bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr,
                     bias_ptr, gout_ptr, glast_ptr, ckpt_ptr, du_ptr,
                     ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr,
                     dC_ptr, E, L, S, CPG, NUM_CHUNKS, NUM_BLOCKS, su_b, su_e,
                     su_l, sd_b, sd_e, sd_l, sA_e, sA_s, sB_b, sB_g, sB_s,
                     sB_l, sC_b, sC_g, sC_s, sC_l, sz_b, sz_e, sz_l, sg_b,
                     sg_e, sg_l, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                     HAS_GLAST: tl.constexpr, ACC: tl.constexpr,
                     BLOCK_E: tl.constexpr, BLOCK_S: tl.constexpr,
                     CHUNK: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_e = tl.program_id(1)
    offs_e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_mask = offs_e < E
    cols = tl.arange(0, BLOCK_S)
    s_mask = cols < S
    es_mask = e_mask[:, None] & s_mask[None, :]
    group = (pid_e * BLOCK_E) // CPG
    steps = tl.arange(0, CHUNK)

    u_ptr += pid_b * su_b
    delta_ptr += pid_b * sd_b
    B_ptr += pid_b * sB_b + group * sB_g
    C_ptr += pid_b * sC_b + group * sC_g
    z_ptr += pid_b * sz_b
    gout_ptr += pid_b * sg_b
    # du, ddelta, dz: contiguous [batch, E, L]
    grad_rows = (pid_b * E + offs_e) * L
    # dB, dC: contiguous [batch, blocks, S, L] (ACC), summed over blocks
    dB_ptr += (pid_b * NUM_BLOCKS + pid_e) * S * L
    dC_ptr += (pid_b * NUM_BLOCKS + pid_e) * S * L
    bias = tl.zeros([BLOCK_E], dtype=ACC)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_e, mask=e_mask, other=0.).to(ACC)
    d_skip = tl.zeros([BLOCK_E], dtype=ACC)
    if HAS_D:
        d_skip = tl.load(D_ptr + offs_e, mask=e_mask, other=0.).to(ACC)
    ck_rows = (pid_b * E + offs_e) * NUM_CHUNKS * S
    state_rows = (pid_b * E + offs_e) * S
    # adjoint state entering each chunk from the right, per state index
    lam_next = tl.zeros([BLOCK_E, BLOCK_S], dtype=ACC)
    if HAS_GLAST:
        lam_next = tl.load(
            glast_ptr + state_rows[:, None] + cols[None, :],
            mask=es_mask,
            other=0.).to(ACC)
    dA_acc = tl.zeros([BLOCK_E, BLOCK_S], dtype=ACC)
    dD_acc = tl.zeros([BLOCK_E], dtype=ACC)
    dbias_acc = tl.zeros([BLOCK_E], dtype=ACC)
    for ci in range(0, NUM_CHUNKS):
        c = NUM_CHUNKS - 1 - ci
        t = c * CHUNK + steps
        t_mask = t < L
        mask = e_mask[:, None] & t_mask[None, :]
        dt, raw = _load_delta(delta_ptr, bias, t, offs_e, mask, sd_e, sd_l,
                              HAS_BIAS, SOFTPLUS, ACC)
        # step sizes one step ahead, for the adjoint's a[t + 1]
        t_next = t + 1
        next_mask = e_mask[:, None] & (t_next < L)[None, :]
        dt_next, _ = _load_delta(delta_ptr, bias, t_next, offs_e, next_mask,
                                 sd_e, sd_l, HAS_BIAS, SOFTPLUS, ACC)
        u = tl.load(
            u_ptr + offs_e[:, None] * su_e + t[None, :] * su_l,
            mask=mask,
            other=0.).to(ACC)
        gout = tl.load(
            gout_ptr + offs_e[:, None] * sg_e + t[None, :] * sg_l,
            mask=mask,
            other=0.).to(ACC)
        gy = gout
        if HAS_Z:
            z = tl.load(
                z_ptr + offs_e[:, None] * sz_e + t[None, :] * sz_l,
                mask=mask,
                other=0.).to(ACC)
            sig_z = tl.sigmoid(z)
            gy = gout * z * sig_z
        dtu = dt * u
        state0 = tl.load(
            ckpt_ptr + ck_rows[:, None] + c * S + cols[None, :],
            mask=es_mask,
            other=0.)
        y = tl.zeros([BLOCK_E, CHUNK], dtype=ACC)
        d_dt = tl.zeros([BLOCK_E, CHUNK], dtype=ACC)
        d_u = tl.zeros([BLOCK_E, CHUNK], dtype=ACC)
        for s in range(0, S):
            A_s = tl.load(
                A_ptr + offs_e * sA_e + s * sA_s, mask=e_mask,
                other=0.).to(ACC)
            B_s = tl.load(
                B_ptr + s * sB_s + t * sB_l, mask=t_mask, other=0.).to(ACC)
            C_s = tl.load(
                C_ptr + s * sC_s + t * sC_l, mask=t_mask, other=0.).to(ACC)
            a = tl.exp(dt * A_s[:, None])
            x = dtu * B_s[None, :]
            a_cum, x_cum = tl.associative_scan((a, x), 1, _combine)
            h = x_cum + a_cum * _column(state0, cols, s)[:, None]
            if HAS_Z:
                y += h * C_s[None, :]
            # reverse scan: lam[t] = a[t + 1] lam[t + 1] + C[t] gy[t]; past
            # the end a = 1, so the gradient of the last state flows in
            a_next = tl.where(next_mask, tl.exp(dt_next * A_s[:, None]), 1.)
            g_cum, lam = tl.associative_scan((a_next, gy * C_s[None, :]),
                                             1,
                                             _combine,
                                             reverse=True)
            lam += g_cum * _column(lam_next, cols, s)[:, None]
            lam_first = _column(lam, steps, 0)
            lam_next = tl.where(cols[None, :] == s, lam_first[:, None],
                                lam_next)
            w = lam * (h - x)  # lam * a[t] * h[t - 1]
            d_dt += w * A_s[:, None] + lam * u * B_s[None, :]
            d_u += lam * dt * B_s[None, :]
            dA_s = tl.sum(tl.where(mask, w * dt, 0.), 1)
            dA_acc = tl.where(cols[None, :] == s, dA_acc + dA_s[:, None],
                              dA_acc)
            tl.store(
                dB_ptr + s * L + t,
                tl.sum(tl.where(mask, lam * dtu, 0.), 0),
                mask=t_mask)
            tl.store(
                dC_ptr + s * L + t,
                tl.sum(tl.where(mask, gy * h, 0.), 0),
                mask=t_mask)
        if HAS_D:
            d_u += gy * d_skip[:, None]
            dD_acc += tl.sum(tl.where(mask, gy * u, 0.), 1)
        if HAS_Z:
            y += u * d_skip[:, None]
            d_z = gout * y * sig_z * (1. + z * (1. - sig_z))
            tl.store(
                dz_ptr + grad_rows[:, None] + t[None, :],
                d_z.to(dz_ptr.dtype.element_ty),
                mask=mask)
        if SOFTPLUS:
            d_dt = tl.where(raw <= 20., d_dt * tl.sigmoid(raw), d_dt)
        d_dt = tl.where(mask, d_dt, 0.)
        dbias_acc += tl.sum(d_dt, 1)
        tl.store(
            ddelta_ptr + grad_rows[:, None] + t[None, :],
            d_dt.to(ddelta_ptr.dtype.element_ty),
            mask=mask)
        tl.store(
            du_ptr + grad_rows[:, None] + t[None, :],
            d_u.to(du_ptr.dtype.element_ty),
            mask=mask)
    tl.store(
        dA_ptr + state_rows[:, None] + cols[None, :], dA_acc, mask=es_mask)
    tl.store(dD_ptr + pid_b * E + offs_e, dD_acc, mask=e_mask)
    tl.store(dbias_ptr + pid_b * E + offs_e, dbias_acc, mask=e_mask)


def _acc_dtype(*tensors) -> torch.dtype:
    return (torch.float64 if any(t is not None and t.dtype == torch.float64
                                 for t in tensors) else torch.float32)


def _tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _last_dim_contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    """Make the time axis unit-stride (coalesced loads), like mamba_ssm."""
    if t is not None and t.stride(-1) != 1:
        t = t.contiguous()
    return t


def _block_e(channels_per_group: int, block_e: int) -> int:
    """Largest power of two <= ``block_e`` dividing the group width."""
    b = 1
    while b * 2 <= block_e and channels_per_group % (b * 2) == 0:
        b *= 2
    return b


class _Launch:
    """Sizes, strides and launch grid shared by the two kernels."""

    def __init__(self, u, delta, A, B, C, z, chunk, block_e, num_warps):
        self.batch, self.channels, self.length = u.shape
        self.state = A.shape[1]
        self.groups = B.shape[1]
        self.cpg = self.channels // self.groups
        # no wider tiles than the problem: short sequences / few channels
        # (tests, small models) get smaller chunks / blocks
        chunk = min(chunk, triton.next_power_of_2(self.length))
        block_e = min(block_e, triton.next_power_of_2(self.cpg))
        self.block_e = (
            _block_e(self.cpg, block_e) if self.groups > 1 else block_e)
        self.block_s = triton.next_power_of_2(self.state)
        self.chunk = chunk
        self.num_chunks = triton.cdiv(self.length, chunk)
        self.num_blocks = triton.cdiv(self.channels, self.block_e)
        self.grid = (self.batch, self.num_blocks)
        self.num_warps = num_warps
        zs = z.stride() if z is not None else (0, 0, 0)
        self.strides = (*u.stride(), *delta.stride(), *A.stride(), *B.stride(),
                        *C.stride(), *zs)

    def sizes(self):
        return (self.channels, self.length, self.state, self.cpg,
                self.num_chunks)

    def meta(self):
        return dict(
            BLOCK_E=self.block_e,
            BLOCK_S=self.block_s,
            CHUNK=self.chunk,
            num_warps=self.num_warps)


def _forward(u,
             delta,
             A,
             B,
             C,
             D,
             z,
             delta_bias,
             softplus,
             acc,
             launch,
             write_out=True,
             write_last=False,
             write_ckpt=False):
    """Run the forward kernel; returns (out, last_state, checkpoints)."""
    lc = launch
    out = torch.empty_like(u) if write_out else None
    last = (
        u.new_empty(lc.batch, lc.channels, lc.state, dtype=acc)
        if write_last else None)
    ckpt = (
        u.new_empty(lc.batch, lc.channels, lc.num_chunks, lc.state, dtype=acc)
        if write_ckpt else None)
    dummy = u.new_empty(1, dtype=acc)
    _scan_fwd_kernel[lc.grid](
        u,
        delta,
        A,
        B,
        C,
        D if D is not None else dummy,
        z if z is not None else dummy,
        delta_bias if delta_bias is not None else dummy,
        out if out is not None else dummy,
        last if last is not None else dummy,
        ckpt if ckpt is not None else dummy,
        *lc.sizes(),
        *lc.strides,
        *(out.stride() if out is not None else (0, 0, 0)),
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        WRITE_OUT=write_out,
        WRITE_LAST=write_last,
        WRITE_CKPT=write_ckpt,
        ACC=_tl_dtype(acc),
        **lc.meta())
    return out, last, ckpt


class _TritonScanFn(torch.autograd.Function):
    """Autograd wrapper of the two kernels (D, z, bias, softplus fused)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus,
                return_last, chunk, block_e, num_warps):
        acc = _acc_dtype(u, delta, A, B, C, D, z, delta_bias)
        launch = _Launch(u, delta, A, B, C, z, chunk, block_e, num_warps)
        out, last, _ = _forward(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            softplus,
            acc,
            launch,
            write_last=return_last)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.config = (softplus, acc, launch)
        return (out, last) if return_last else out

    @staticmethod
    @once_differentiable
    def backward(ctx, gout, *rest):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        softplus, acc, lc = ctx.config
        glast = rest[0] if rest else None
        gout = (
            torch.zeros_like(u)
            if gout is None else _last_dim_contiguous(gout))
        # states entering every chunk, recomputed (not kept since forward)
        _, _, ckpt = _forward(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            softplus,
            acc,
            lc,
            write_out=False,
            write_ckpt=True)
        shape = (lc.batch, lc.channels, lc.length)  # contiguous
        du = u.new_empty(shape)
        ddelta = delta.new_empty(shape)
        dz = z.new_empty(shape) if z is not None else None
        dA = u.new_empty(lc.batch, lc.channels, lc.state, dtype=acc)
        dD = u.new_empty(lc.batch, lc.channels, dtype=acc)
        dbias = torch.empty_like(dD)
        dB = u.new_empty(
            lc.batch, lc.num_blocks, lc.state, lc.length, dtype=acc)
        dC = torch.empty_like(dB)
        if glast is not None:
            glast = glast.to(acc).contiguous()
        dummy = u.new_empty(1, dtype=acc)
        _scan_bwd_kernel[lc.grid](
            u,
            delta,
            A,
            B,
            C,
            D if D is not None else dummy,
            z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy,
            gout,
            glast if glast is not None else dummy,
            ckpt,
            du,
            ddelta,
            dz if dz is not None else dummy,
            dA,
            dD,
            dbias,
            dB,
            dC,
            *lc.sizes(),
            lc.num_blocks,
            *lc.strides,
            *gout.stride(),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=softplus,
            HAS_GLAST=glast is not None,
            ACC=_tl_dtype(acc),
            **lc.meta())
        per_group = lc.num_blocks // lc.groups
        dB = dB.view(lc.batch, lc.groups, per_group, lc.state,
                     lc.length).sum(2).to(B.dtype)
        dC = dC.view(lc.batch, lc.groups, per_group, lc.state,
                     lc.length).sum(2).to(C.dtype)
        return (du, ddelta, dA.sum(0).to(A.dtype), dB, dC,
                dD.sum(0).to(D.dtype) if D is not None else None, dz,
                dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None
                else None, None, None, None, None, None)


def selective_scan_triton(u: Tensor,
                          delta: Tensor,
                          A: Tensor,
                          B: Tensor,
                          C: Tensor,
                          D: Optional[Tensor] = None,
                          z: Optional[Tensor] = None,
                          delta_bias: Optional[Tensor] = None,
                          delta_softplus: bool = False,
                          return_last_state: bool = False,
                          chunk: int = DEFAULT_CHUNK,
                          block_e: int = DEFAULT_BLOCK_E,
                          num_warps: int = 4):
    """Selective scan with Triton kernels (differentiable).

    Inputs must already be validated (see
    :func:`mmstop.models.ops.selective_scan`, whose arguments these are).
    The output has ``u``'s dtype; the gradients have their inputs' dtypes.

    Args:
        chunk (int): Steps per chunk of the in-kernel prefix scan, a power
            of two (at most the sequence length rounded up to one).
            Defaults to 64.
        block_e (int): Channels per program, a power of two (at most the
            channel count rounded up to one); with grouped ``B``/``C`` the
            largest power of two that divides the group width and is at most
            this. Defaults to 32.
        num_warps (int): Warps per program. Defaults to 4.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``out`` and, with
        ``return_last_state``, the last state [batch, channels, state] in
        the accumulation dtype (fp32, or fp64 for fp64 inputs).
    """
    reason = triton_usable(u.device)
    if reason is not None:
        raise RuntimeError(f'selective_scan(impl="triton"): {reason}')
    for name, value in (('chunk', chunk), ('block_e', block_e)):
        if value < 1 or value & (value - 1):
            raise ValueError(f'selective_scan_triton: `{name}` must be a '
                             f'power of two, got {value}')
    B4 = B.unsqueeze(1) if B.dim() == 3 else B
    C4 = C.unsqueeze(1) if C.dim() == 3 else C
    if B4.shape[1] != C4.shape[1]:  # differently grouped: one group each
        channels = u.shape[1]
        B4 = B4.repeat_interleave(channels // B4.shape[1], dim=1)
        C4 = C4.repeat_interleave(channels // C4.shape[1], dim=1)
    u, delta, z = (_last_dim_contiguous(t) for t in (u, delta, z))
    B4, C4 = _last_dim_contiguous(B4), _last_dim_contiguous(C4)
    return _TritonScanFn.apply(u, delta, A, B4, C4, D, z, delta_bias,
                               bool(delta_softplus), bool(return_last_state),
                               chunk, block_e, num_warps)
