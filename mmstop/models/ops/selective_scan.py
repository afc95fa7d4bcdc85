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
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

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


def selective_scan_fast(u: Tensor,
                        delta: Tensor,
                        A: Tensor,
                        B: Tensor,
                        C: Tensor,
                        D: Optional[Tensor] = None,
                        z: Optional[Tensor] = None,
                        delta_bias: Optional[Tensor] = None,
                        delta_softplus: bool = False,
                        return_last_state: bool = False):
    """Vectorised pure-PyTorch selective scan.

    Temporarily the sequential reference (same results, same signature).
    See :func:`selective_scan` for the arguments.
    """
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias,
                                    delta_softplus, return_last_state)


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
