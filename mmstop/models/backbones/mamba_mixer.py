# Copyright (c) mmstop contributors. All rights reserved.
"""Bidirectional Mamba mixer, RMSNorm and the Add -> Norm -> Mixer block.

Reproduces what the official VideoMamba / SSP code computes on GPU
(``docs/ssp.md#blocks-add-rmsnorm-mixer``, ``docs/ssp.md#mixer-bimamba-v2``,
``docs/ssp.md#selective-scan-recurrence``). The parameter names are the
official ones (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``,
``D`` and their ``_b`` twins, ``out_proj``; the block's ``mixer`` and
``norm``), so published checkpoints load without renaming.

The mixer is the "v2" bidirectional variant that VideoMamba uses: ``in_proj``
and ``out_proj`` are shared by the two directions, every other tensor
(causal depthwise conv, ``x_proj``, ``dt_proj``, ``A``, ``D``) exists once per
direction, the backward direction is the same computation on the reversed
sequence (``x`` *and* the gate ``z`` reversed) flipped back, and the two
directions are summed (not averaged).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from mmstop.models.ops import selective_scan


class RMSNorm(nn.Module):
    """Root-mean-square norm without bias, computed in fp32.

    ``y = x / sqrt(mean(x ** 2, -1) + eps) * weight``.

    Args:
        dims (int): Size of the last dimension.
        eps (float): Added to the mean square. Defaults to 1e-5.
    """

    def __init__(self, dims: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dims))

    def forward(self,
                x: Tensor,
                out_dtype: Optional[torch.dtype] = None) -> Tensor:
        """Normalise ``x`` in fp32 and return it in ``out_dtype``.

        Args:
            x (Tensor): Input, [..., dims].
            out_dtype (torch.dtype, optional): Output dtype. Defaults to
                ``x.dtype``.
        """
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        y = y * self.weight.float()
        return y.to(out_dtype if out_dtype is not None else x.dtype)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'


class BiMambaMixer(nn.Module):
    """Bidirectional selective-state-space mixer (VideoMamba "bimamba v2").

    Per direction, on ``x, z = split(in_proj(u))`` laid out as
    [batch, d_inner, length]::

        xc = SiLU(causal_depthwise_conv1d(x))        # K - 1 zeros on the left
        dt, B, C = split(x_proj(xc))      # sizes dt_rank, d_state, d_state
        dt = dt_proj.weight @ dt                     # bias enters the scan
        y = selective_scan(xc, dt, -exp(A_log), B, C, D, z,
                           delta_bias=dt_proj.bias, delta_softplus=True)

    The backward direction runs the same on ``flip(x), flip(z)`` with the
    ``_b`` tensors and is flipped back; ``out = out_proj(y_f + y_b)``.

    Args:
        embed_dims (int): Model width C.
        d_state (int): State size S per channel. Defaults to 16.
        d_conv (int): Causal conv kernel size K. Defaults to 4.
        expand (int): ``d_inner = expand * embed_dims``. Defaults to 2.
        dt_rank (int | str): Rank of the step-size projection; ``'auto'``
            means ``ceil(embed_dims / 16)``. Defaults to ``'auto'``.
        dt_min (float): Smallest initial step size (Mamba's dt init).
            Defaults to 0.001.
        dt_max (float): Largest initial step size. Defaults to 0.1.
        scan_impl (str): ``impl`` passed to
            :func:`mmstop.models.ops.selective_scan` (``'auto'``,
            ``'reference'``, ``'fast'``, ``'triton'``, ``'mamba_ssm'``).
            Defaults to ``'auto'``.
    """

    def __init__(self,
                 embed_dims: int,
                 d_state: int = 16,
                 d_conv: int = 4,
                 expand: int = 2,
                 dt_rank='auto',
                 dt_min: float = 0.001,
                 dt_max: float = 0.1,
                 scan_impl: str = 'auto') -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * embed_dims)
        self.dt_rank = (
            math.ceil(embed_dims / 16) if dt_rank == 'auto' else int(dt_rank))
        self.scan_impl = scan_impl
        e, r, s = self.d_inner, self.dt_rank, d_state

        # Registered in the official order, so state_dict() lists the keys
        # as the official model does.
        a_log = torch.log(torch.arange(1, s + 1, dtype=torch.float32))
        self.A_log = nn.Parameter(a_log.repeat(e, 1))  # S4D-real init
        self.D = nn.Parameter(torch.ones(e))
        self.A_b_log = nn.Parameter(a_log.repeat(e, 1))
        self.D_b = nn.Parameter(torch.ones(e))
        self.in_proj = nn.Linear(embed_dims, 2 * e, bias=False)
        for sfx in ('', '_b'):  # forward direction, then backward
            setattr(self, 'conv1d' + sfx,
                    nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1))
            setattr(self, 'x_proj' + sfx, nn.Linear(e, r + 2 * s, bias=False))
            setattr(self, 'dt_proj' + sfx, nn.Linear(r, e, bias=True))
        self.out_proj = nn.Linear(e, embed_dims, bias=False)
        self._init_dt_proj(dt_min, dt_max)

    @torch.no_grad()
    def _init_dt_proj(self,
                      dt_min: float,
                      dt_max: float,
                      dt_floor: float = 1e-4) -> None:
        """Mamba's step-size init: softplus(bias) log-uniform in [min, max]."""
        for proj in (self.dt_proj, self.dt_proj_b):
            bound = self.dt_rank**-0.5
            nn.init.uniform_(proj.weight, -bound, bound)
            dt = torch.exp(
                torch.rand(self.d_inner) *
                (math.log(dt_max) - math.log(dt_min)) +
                math.log(dt_min)).clamp(min=dt_floor)
            proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _direction(self, x: Tensor, z: Tensor, sfx: str) -> Tensor:
        """One scan direction on x, z [batch, d_inner, length]."""
        conv = getattr(self, 'conv1d' + sfx)
        x_proj = getattr(self, 'x_proj' + sfx)
        dt_proj = getattr(self, 'dt_proj' + sfx)
        a_log = getattr(self, 'A_log' if sfx == '' else 'A_b_log')
        d_skip = getattr(self, 'D' + sfx)
        length = x.shape[-1]
        # Causal depthwise conv: nn.Conv1d pads K - 1 on both sides; keeping
        # the first `length` outputs is the left-padded causal conv.
        xc = F.silu(
            F.conv1d(
                x,
                conv.weight,
                conv.bias,
                padding=self.d_conv - 1,
                groups=self.d_inner)[..., :length])
        x_dbl = F.linear(xc.transpose(1, 2), x_proj.weight)  # [b, l, r+2s]
        dt, b_mat, c_mat = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, dt_proj.weight).transpose(1, 2)  # [b, e, l]
        A = -torch.exp(a_log.float())
        return selective_scan(
            xc,
            dt,
            A,
            b_mat.transpose(1, 2).contiguous(),
            c_mat.transpose(1, 2).contiguous(),
            D=d_skip.float(),
            z=z,
            delta_bias=dt_proj.bias.float(),
            delta_softplus=True,
            impl=self.scan_impl)

    def forward_directions(self, u: Tensor) -> Tuple[Tensor, Tensor]:
        """Both directions' gated scan outputs before ``out_proj``.

        Args:
            u (Tensor): Input, [batch, length, embed_dims].

        Returns:
            tuple[Tensor, Tensor]: ``y_forward`` and ``y_backward`` (already
            flipped back to the input order), each [batch, d_inner, length].
        """
        xz = self.in_proj(u).transpose(1, 2)  # [b, 2e, l]
        x, z = xz.chunk(2, dim=1)
        y_f = self._direction(x, z, '')
        y_b = self._direction(x.flip(-1), z.flip(-1), '_b').flip(-1)
        return y_f, y_b

    def forward(self, u: Tensor) -> Tensor:
        """Mix ``u`` [batch, length, embed_dims] along the sequence."""
        y_f, y_b = self.forward_directions(u)
        return self.out_proj((y_f + y_b).transpose(1, 2))


class MambaBlock(nn.Module):
    """Add -> RMSNorm -> mixer block with a separately carried residual.

    ``forward(hidden, residual)`` returns ``(mixer(norm(r)), r)`` with
    ``r = hidden`` for the first block (``residual is None``) and
    ``r = residual + drop_path(hidden)`` otherwise; ``r`` is kept in fp32
    when ``residual_in_fp32`` and the normed mixer input is cast to
    ``hidden``'s dtype (the rules of the official fused add + norm kernel).

    Args:
        embed_dims (int): Model width.
        drop_path (float): Drop-path rate applied to the incoming ``hidden``.
            Defaults to 0.
        norm_eps (float): RMSNorm epsilon. Defaults to 1e-5.
        residual_in_fp32 (bool): Keep the residual stream in fp32.
            Defaults to True.
        **mixer_kwargs: Passed to :class:`BiMambaMixer`.
    """

    def __init__(self,
                 embed_dims: int,
                 drop_path: float = 0.,
                 norm_eps: float = 1e-5,
                 residual_in_fp32: bool = True,
                 **mixer_kwargs) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.mixer = BiMambaMixer(embed_dims, **mixer_kwargs)
        self.norm = RMSNorm(embed_dims, eps=norm_eps)
        self.drop_path = (
            DropPath(drop_path) if drop_path > 0 else nn.Identity())

    def forward(self,
                hidden: Tensor,
                residual: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Return ``(mixer output, new residual)``; see the class doc."""
        if residual is None:
            residual = hidden
        else:
            residual = residual + self.drop_path(hidden)
        if self.residual_in_fp32:
            residual = residual.float()
        hidden = self.mixer(self.norm(residual, out_dtype=hidden.dtype))
        return hidden, residual
