# Copyright (c) mmstop contributors. All rights reserved.
"""Whether the operators a model runs are being recorded one by one."""
import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def operators_recorded() -> bool:
    """True while ``torch.jit.trace`` records the model or a
    ``TorchDispatchMode`` (e.g. :class:`mmstop.utils.flops.MACCounter`)
    sees every operator.

    FLOP counters do both. mmstop's fast CPU paths compute a convolution
    with FFTs and the selective scan in hundreds of small steps; recorded,
    they would hide the operation from the counter (or break the trace:
    the FFT sizes are computed from shapes, which tracing turns into
    tensors). While operators are recorded, :func:`~.conv.conv3d_same` uses
    ``F.conv3d`` and :func:`mmstop.models.ops.selective_scan` is the single
    operator ``mmstop::selective_scan``, with the same results.

    Returns:
        bool: Whether operators are recorded.
    """
    return torch.jit.is_tracing() or is_in_torch_dispatch_mode()
