# Copyright (c) mmstop contributors. All rights reserved.
"""Whether the operators a model runs are being recorded one by one."""
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from mmstop.utils.flops import OperatorRecorder


def operators_recorded() -> bool:
    """True while ``torch.jit.trace`` records the model or an
    :class:`~mmstop.utils.flops.OperatorRecorder` (e.g.
    :class:`~mmstop.utils.flops.MACCounter`) sees every operator.

    FLOP counters do one or the other. mmstop's fast CPU paths compute a
    convolution with FFTs and the selective scan in hundreds of small steps;
    recorded, they would hide the operation from the counter (or break the
    trace: the FFT sizes are computed from shapes, which tracing turns into
    tensors). While operators are recorded, :func:`~.conv.conv3d_same` uses
    ``F.conv3d`` and :func:`mmstop.models.ops.selective_scan` is the single
    operator ``mmstop::selective_scan``, with the same results. Other
    dispatch modes (``torch.compile``'s fake tensors, profilers) see the
    usual paths.

    Returns:
        bool: Whether operators are recorded.
    """
    return torch.jit.is_tracing() or any(
        isinstance(mode, OperatorRecorder)
        for mode in _get_current_dispatch_mode_stack())
