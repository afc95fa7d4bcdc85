# Copyright (c) mmstop contributors. All rights reserved.
"""Convolution helpers shared by the prompt modules."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .recording import operators_recorded


def _fast_fft_length(n: int) -> int:
    """Smallest 5-smooth integer >= n (FFT sizes that pocketfft handles
    fast)."""
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
    # channel mixing per output channel: einsum/bmm on complex tensors runs
    # one tiny GEMM per frequency on CPU (10k+ calls)
    fy = torch.stack([(fx * fw[o]).sum(dim=1) for o in range(fw.shape[0])],
                     dim=1)
    y = torch.fft.irfftn(fy, s=size, dim=(2, 3, 4))
    kt, kh, kw = kernel
    y = y[:, :, kt - 1:x.shape[2], kh - 1:x.shape[3], kw - 1:x.shape[4]]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1, 1)
    return y.contiguous()


def uses_fft(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`conv3d_same` computes this call with FFTs.

    The rule is documented in :func:`conv3d_same`.

    Args:
        x (torch.Tensor): Input ``[B, C_in, T, H, W]``.
        weight (torch.Tensor): Kernel ``[C_out, C_in, kT, kH, kW]``.

    Returns:
        bool: True for the FFT path, False for ``F.conv3d``.
    """
    if x.device.type != 'cpu' or operators_recorded():
        return False
    needs_backward = torch.is_grad_enabled() and (x.requires_grad
                                                  or weight.requires_grad)
    out_channels, in_channels = weight.shape[:2]
    return (x.dtype == torch.float64 or out_channels == 1
            or (in_channels == 1 and needs_backward))


def conv3d_same(x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                padding: Sequence[int]) -> torch.Tensor:
    """Stride-1 3D convolution with a CPU backend chosen for speed.

    STOP's prompt modules use few channels and large kernels (up to
    ``3 x 15 x 25``). On CPU, PyTorch's Conv3d handles some of them badly:
    float64 has no mkldnn kernel and falls back to one im2col buffer for the
    whole volume (more than 12 GB for the inter-frame convolution at 4
    frames), and mkldnn is slow for convolutions to one output channel (the
    scorers and the last prompt layer: FFTs are up to 113x faster forward
    and 2.6-49x faster forward+backward) and, when training, from one input
    channel (1.9-2.6x). Elsewhere mkldnn wins (FFTs 1.4-5x slower). Measured
    with ``tools/analysis/benchmark_conv.py`` on every convolution of the
    official model and of the demo; results in ``docs/benchmarks.md``. So,
    on CPU, the correlation is computed with real FFTs (the same mathematics
    up to round-off: about 1e-15 relative in float64, 1e-6 in float32) when

    * the input is float64, or
    * the kernel has one output channel, or
    * the kernel has one input channel and a backward pass will follow
      (grad mode on and an input requiring grad);

    and with ``F.conv3d`` (mkldnn) otherwise. Both backends reproduce the
    official float32 outputs within the golden data's tolerances
    (tests/models/test_stop_parity.py).

    On other devices, and while the operators are recorded (a FLOP counter
    traces the model or watches its operators:
    :func:`~.recording.operators_recorded`), ``F.conv3d`` is always used.

    Args:
        x (torch.Tensor): Input of shape ``[B, C_in, T, H, W]``.
        weight (torch.Tensor): Kernel ``[C_out, C_in, kT, kH, kW]``.
        bias (torch.Tensor, optional): Bias ``[C_out]``.
        padding (Sequence[int]): Zero padding ``(pT, pH, pW)``.

    Returns:
        torch.Tensor: ``[B, C_out, T', H', W']``.
    """
    if uses_fft(x, weight):
        return _conv3d_fft(x, weight, bias, padding)
    return F.conv3d(x, weight, bias, padding=tuple(padding))


def same_padding(kernel_size: Sequence[int]) -> Tuple[int, ...]:
    """Zero padding that keeps the size of a stride-1 convolution.

    Args:
        kernel_size (Sequence[int]): Odd kernel sizes.

    Returns:
        tuple[int, ...]: ``(k - 1) // 2`` per axis.

    Raises:
        ValueError: For an even kernel size.
    """
    for k in kernel_size:
        if k % 2 != 1:
            raise ValueError(
                'kernel sizes must be odd for "same" padding, got '
                f'{kernel_size}')
    return tuple((k - 1) // 2 for k in kernel_size)


def run_conv_stack(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply a Sequential of ``nn.Conv3d`` and activations, the convolutions
    through :func:`conv3d_same` (the same weights; a faster CPU backend).

    Args:
        stack (nn.Sequential): Stride-1 ``nn.Conv3d`` layers and modules
            applied as they are.
        x (torch.Tensor): Input ``[B, C_in, T, H, W]``.

    Returns:
        torch.Tensor: The output of the stack.
    """
    for layer in stack:
        if isinstance(layer, nn.Conv3d):
            x = conv3d_same(x, layer.weight, layer.bias, layer.padding)
        else:
            x = layer(x)
    return x
