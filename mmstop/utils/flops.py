# Copyright (c) mmstop contributors. All rights reserved.
"""Counting the multiply-accumulates (MACs) of mmstop models.

MMEngine's ``FlopAnalyzer`` (behind ``get_model_complexity_info`` and
MMAction2's ``tools/analysis_tools/get_flops.py``) traces a model and counts
the operators it has a handle for, with fvcore's convention: **one fused
multiply-add counts as one "flop"**, i.e. it counts MACs (GFLOPs in the
usual sense are 2 x MACs); elementwise operators, activations and
reductions are not counted. Two operators of mmstop models have no handle
in MMEngine 0.10.7:

* ``mmstop::selective_scan``, the node VideoMamba's selective scan becomes
  while it is traced (:func:`mmstop.models.ops.selective_scan`), counted by
  :func:`selective_scan_flop_jit`;
* ``aten::scaled_dot_product_attention``, through which
  ``nn.MultiheadAttention`` (CLIP's attention, STOP's and SSP's prompt
  attentions) computes its attention, counted by :func:`sdpa_flop_jit`.

:func:`register_flop_handles` adds both to MMEngine's default handles, so
every ``FlopAnalyzer`` / ``ActivationAnalyzer`` built afterwards counts them;
``import mmstop`` calls it (:mod:`mmstop.compat`).

Tracing runs the model. :class:`MACCounter` counts the same operators with
the same formulas without tracing, at the dispatcher, so it also counts
models on the ``meta`` device, which compute nothing: full-size models are
counted in a second (MMEngine's tracer cannot run on ``meta``: its shapes
become tensors inside PyTorch's meta kernels). The tests check that both
counts agree on every demo model.
"""
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from mmengine.analysis.jit_handles import (Handle, generic_activation_jit,
                                           get_shape)
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    'FLOP_HANDLES', 'MACCounter', 'OperatorRecorder', 'register_flop_handles',
    'scan_macs', 'sdpa_flop_jit', 'selective_scan_flop_jit'
]


def scan_macs(batch: int,
              channels: int,
              length: int,
              state: int,
              with_d: bool = True,
              with_z: bool = True) -> int:
    """MACs of one selective scan
    (``docs/ssp.md#selective-scan-recurrence``).

    Per batch element, channel and step, with ``N`` = ``state``:

    * ``N`` for ``delta * A`` (the discretised ``A``; its ``exp`` is not
      counted);
    * ``N + 1`` for ``delta * u`` and its product with ``B``;
    * ``N`` for the state update ``h = dA * h + dBu``;
    * ``N`` for the output ``y = C . h``;
    * 1 for the skip term ``D * u`` (with ``D``) and 1 for the gate
      ``y * silu(z)`` (with ``z``; ``silu`` is not counted).

    That is ``4N + 1 + [D] + [z]`` per element (67 for VideoMamba's
    ``N = 16`` with both); softplus and exp are activations, which fvcore's
    convention does not count.

    Args:
        batch (int): Batch size.
        channels (int): Channels (``d_inner``).
        length (int): Sequence length.
        state (int): State size ``N``.
        with_d (bool): Whether the skip term is computed. Defaults to True.
        with_z (bool): Whether the gate is applied. Defaults to True.

    Returns:
        int: The MACs.
    """
    per_element = 4 * state + 1 + int(with_d) + int(with_z)
    return batch * channels * length * per_element


def selective_scan_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MMEngine handle of ``mmstop::selective_scan`` (:func:`scan_macs`).

    The operator's inputs are ``u, delta, A, B, C, D, z, delta_bias,
    delta_softplus, impl``; ``D`` and ``z`` may be None.

    Args:
        inputs (list[torch._C.Value]): The operator's traced inputs.
        outputs (list[torch._C.Value]): Its traced outputs.

    Returns:
        int: The MACs.
    """
    batch, channels, length = get_shape(inputs[0])
    state = get_shape(inputs[2])[1]
    return scan_macs(
        batch,
        channels,
        length,
        state,
        with_d=get_shape(inputs[5]) is not None,
        with_z=get_shape(inputs[6]) is not None)


def _prod(sizes: Sequence[int]) -> int:
    out = 1
    for size in sizes:
        out *= int(size)
    return out


def attention_macs(query: Sequence[int], key: Sequence[int],
                   value: Sequence[int]) -> int:
    """MACs of ``softmax(Q K^T) V`` for the shapes of ``Q``, ``K``, ``V``
    (see :func:`sdpa_flop_jit`)."""
    return _prod(query[:-2]) * query[-2] * key[-2] * (query[-1] + value[-1])


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MMEngine handle of ``aten::scaled_dot_product_attention``.

    The two matrix products of the attention, ``Q K^T`` and ``P V``:
    ``batch * Lq * Lk * (E + Ev)`` MACs for a query ``[..., Lq, E]``, a key
    ``[..., Lk, E]`` and a value ``[..., Lk, Ev]`` (``batch`` = the product
    of the query's leading dimensions); the scaling, the mask and the
    softmax are elementwise and not counted. A causal mask is counted as the
    full product, as MMEngine counts every matmul.

    Args:
        inputs (list[torch._C.Value]): The operator's traced inputs.
        outputs (list[torch._C.Value]): Its traced outputs.

    Returns:
        int: The MACs.
    """
    return attention_macs(*(get_shape(v) for v in inputs[:3]))


#: The handles :func:`register_flop_handles` adds, by operator name.
FLOP_HANDLES: Dict[str, Handle] = {
    'mmstop::selective_scan': selective_scan_flop_jit,
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
}


def register_flop_handles() -> None:
    """Add :data:`FLOP_HANDLES` (and activation handles for the same
    operators) to MMEngine's default handles, where MMEngine has none.

    ``FlopAnalyzer`` and ``ActivationAnalyzer`` copy the defaults when they
    are built, so analyzers built afterwards count these operators.
    Idempotent; a handle MMEngine itself defines is kept.
    """
    from mmengine.analysis import complexity_analysis
    flops = complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS
    activations = complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS
    for name, handle in FLOP_HANDLES.items():
        flops.setdefault(name, handle)
        activations.setdefault(name, generic_activation_jit())


def _shape(x: Any) -> List[int]:
    return list(x.shape)


def _norm_macs(args: tuple, weight_index: int) -> int:
    """MMEngine's norm count: 5 per element with an affine weight, else 4."""
    return _prod(args[0].shape) * (5 if args[weight_index] is not None else 4)


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    """MMEngine's ``conv_flop_count``: batch x kernel size x output size (or
    input size when transposed)."""
    x, weight, transposed = args[0], args[1], bool(args[6])
    spatial = (x.shape if transposed else out.shape)[2:]
    return x.shape[0] * _prod(weight.shape) * _prod(spatial)


def _scan_macs_of_call(args: tuple, out: torch.Tensor) -> int:
    batch, channels, length = args[0].shape
    return scan_macs(
        batch,
        channels,
        length,
        args[2].shape[1],
        with_d=args[5] is not None,
        with_z=args[6] is not None)


def _dispatch_rules() -> Dict[Any, Callable[[tuple, Any], int]]:
    """The operators :class:`MACCounter` counts (by overload packet), with
    the formulas of MMEngine's handles of the operators they come from
    (``aten::linear``/``matmul``/``einsum`` arrive here as ``mm``/``bmm``;
    attention as ``_scaled_dot_product_*`` or as two ``bmm``)."""
    aten = torch.ops.aten

    def mm(a, b):
        return a.shape[0] * a.shape[1] * b.shape[1]

    def bmm(a, b):
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]

    def attention(args, out):
        return attention_macs(*(_shape(t) for t in args[:3]))

    rules = {
        aten.mm: lambda args, out: mm(args[0], args[1]),
        aten.addmm: lambda args, out: mm(args[1], args[2]),
        aten.bmm: lambda args, out: bmm(args[0], args[1]),
        aten.baddbmm: lambda args, out: bmm(args[1], args[2]),
        aten.convolution: lambda args, out: _conv_macs(args, out),
        aten.native_layer_norm: lambda args, out: _norm_macs(args, 2),
        aten.native_group_norm: lambda args, out: _norm_macs(args, 1),
        torch.ops.mmstop.selective_scan: _scan_macs_of_call,
    }
    for name in ('_scaled_dot_product_flash_attention_for_cpu',
                 '_scaled_dot_product_flash_attention',
                 '_scaled_dot_product_efficient_attention',
                 '_scaled_dot_product_cudnn_attention'):
        if hasattr(aten, name):
            rules[getattr(aten, name)] = attention
    return rules


class OperatorRecorder(TorchDispatchMode):
    """A dispatch mode that records every operator of a model (a FLOP
    counter). While one is active, mmstop models run the single-operator
    forms of their fused CPU paths
    (:func:`mmstop.models.utils.operators_recorded`)."""


class MACCounter(OperatorRecorder):
    """Count the MACs of everything run inside the context.

    The operators and formulas are those of MMEngine's ``FlopAnalyzer``
    with :data:`FLOP_HANDLES` (see the module doc); it works on any device,
    ``meta`` included. ``nn.MultiheadAttention``'s fused inference path
    (``_native_multi_head_attention``, taken on CPU/CUDA without autograd)
    is switched off inside the context, so its projections and attention
    are counted as separate operators, as in a trace.

    Example::

        >>> with MACCounter() as counter:
        ...     model(inputs)
        >>> counter.total

    Attributes:
        total (int): MACs counted so far.
        by_operator (Counter): MACs per operator name.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_operator: Counter = Counter()
        self._rules = _dispatch_rules()
        self._fastpath: Optional[bool] = None

    def __enter__(self) -> 'MACCounter':
        self._fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        torch.backends.mha.set_fastpath_enabled(self._fastpath)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = self._rules.get(func.overloadpacket)
        if rule is not None:
            macs = int(rule(args, out))
            self.total += macs
            self.by_operator[func.overloadpacket.__name__] += macs
        return out
