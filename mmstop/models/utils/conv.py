# Copyright (c) mmstop contributors. All rights reserved.
"""Convolution helpers shared by the prompt modules."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def _fast_fft_length(n: int) -> int:
    """Smallest 5-smooth integer >= n (FFT sizes that pocketfft handles fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _conv3d_fft(x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                padding: Sequence[int]) -> torch.Tensor:
    """Stride-1 3D cross-correlation through real FFTs (no im2col buffer)."""
    pad_t, pad_h, pad_w = padding
    x = F.pad(x, (pad_w, pad_w, pad_h, pad_h, pad_t, pad_t))
    kernel = weight.shape[2:]
    size = [_fast_fft_length(n + k - 1) for n, k in zip(x.shape[2:], kernel)]
    fx = torch.fft.rfftn(x, s=size, dim=(2, 3, 4))
    # correlation = convolution with the flipped kernel
    fw = torch.fft.rfftn(weight.flip(2, 3, 4), s=size, dim=(2, 3, 4))
    fy = torch.einsum('bi...,oi...->bo...', fx, fw)
    y = torch.fft.irfftn(fy, s=size, dim=(2, 3, 4))
    kt, kh, kw = kernel
    y = y[:, :, kt - 1:x.shape[2], kh - 1:x.shape[3], kw - 1:x.shape[4]]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1, 1)
    return y.contiguous()


def conv3d_same(x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                padding: Sequence[int]) -> torch.Tensor:
    """Stride-1 ``F.conv3d`` that stays fast and small in float64 on CPU.

    PyTorch has no mkldnn kernel for float64 Conv3d on CPU; its fallback
    builds one im2col buffer for the whole volume (more than 12 GB for STOP's
    inter-frame convolution at 4 frames) and runs a skinny GEMM at a few
    GFLOP/s. For float64 CPU tensors the correlation is therefore computed
    with real FFTs: the same mathematics, exact to about 1e-15 relative in
    float64. Every other dtype/device uses ``F.conv3d`` directly.

    Args:
        x (torch.Tensor): Input of shape ``[B, C_in, T, H, W]``.
        weight (torch.Tensor): Kernel ``[C_out, C_in, kT, kH, kW]``.
        bias (torch.Tensor, optional): Bias ``[C_out]``.
        padding (Sequence[int]): Zero padding ``(pT, pH, pW)``.

    Returns:
        torch.Tensor: ``[B, C_out, T', H', W']``.
    """
    if x.dtype == torch.float64 and x.device.type == 'cpu':
        return _conv3d_fft(x, weight, bias, padding)
    return F.conv3d(x, weight, bias, padding=tuple(padding))
