# Copyright (c) mmstop contributors. All rights reserved.
"""All-gather of per-process features for a contrastive loss.

:func:`gather_features` concatenates the rows of every process in rank order
(rank 0's rows first), so every process builds the same global batch and the
same similarity layout. Local batch sizes may differ between processes (they
are exchanged first and the tensors padded for the collective).

Two gradient rules (``grad``):

* ``'local'`` (official CLIP4Clip / STOP ``modules/utils.all_gather``): the
  other processes' rows are constants; only this process's own rows, put
  back in place as the original tensors, carry gradient. Each process
  therefore back-propagates only the part of ``dL/dfeatures`` that belongs
  to its rows.
* ``'exact'``: a differentiable all-gather whose backward *sums* the
  gathered gradient over the processes (``all_reduce``) and returns this
  process's slice. Every process computes the same loss ``L`` of the global
  batch, so the sum is ``world_size * dL/d(own rows)``.

Gradient scale under DDP, which *averages* parameter gradients over the
``W`` processes. Let ``g* = dL/dtheta`` be the gradient of one process that
holds the whole global batch, and ``g_r`` the part flowing through the rows
of process ``r`` (``g* = sum_r g_r``):

* ``'local'``: process ``r`` ends with ``g_r``; DDP gives
  ``(1/W) sum_r g_r = g* / W``.
* ``'exact'``: process ``r`` ends with ``W g_r``; DDP gives ``g*``.

Without an initialised process group (or with one process) both return the
input unchanged, i.e. the exact single-process gradient.
"""
from typing import List, Sequence, Tuple

import torch
import torch.distributed as dist

GATHER_GRADS = ('local', 'exact')


def _world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _gather_sizes(n: int, device: torch.device, world: int) -> List[int]:
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _gather_padded(x: torch.Tensor,
                   sizes: Sequence[int]) -> List[torch.Tensor]:
    """All-gather ``x`` (no autograd); returns each rank's rows."""
    world = len(sizes)
    longest = max(sizes)
    if x.shape[0] == longest:
        padded = x.detach().contiguous()
    else:
        padded = x.new_zeros((longest, ) + tuple(x.shape[1:]))
        padded[:x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [p[:n] for p, n in zip(parts, sizes)]


class _AllGatherSumGrad(torch.autograd.Function):
    """All-gather whose backward all-reduces (sums) the incoming gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: Tuple[int, ...],
                rank: int) -> torch.Tensor:
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat(_gather_padded(x, sizes), dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_features(*tensors: torch.Tensor,
                    grad: str = 'local') -> Tuple[torch.Tensor, ...]:
    """Concatenate the rows of every process, in rank order.

    Args:
        *tensors (torch.Tensor): Local tensors ``[b, ...]``, all with the same
            number of rows ``b`` (``b`` may differ between processes).
        grad (str): ``'local'`` (official: only the local rows keep their
            gradient) or ``'exact'`` (backward sums over processes). See the
            module docstring for the resulting DDP gradient scale. Defaults
            to ``'local'``.

    Returns:
        tuple[torch.Tensor]: The global tensors ``[sum_r b_r, ...]``; this
        process's rows are at offset ``sum_{r' < rank} b_r'``.
    """
    if grad not in GATHER_GRADS:
        raise ValueError(f'grad must be one of {GATHER_GRADS}, got {grad!r}')
    if not tensors:
        return ()
    n = tensors[0].shape[0]
    for t in tensors[1:]:
        if t.shape[0] != n:
            raise ValueError('gather_features: all tensors need the same '
                             f'number of rows, got '
                             f'{[tuple(t.shape) for t in tensors]}')
    world, rank = _world()
    if world == 1:
        return tuple(tensors)
    sizes = tuple(_gather_sizes(n, tensors[0].device, world))
    out = []
    for t in tensors:
        if grad == 'exact':
            out.append(_AllGatherSumGrad.apply(t, sizes, rank))
        else:
            parts = _gather_padded(t, sizes)
            parts[rank] = t  # the local rows keep their graph
            out.append(torch.cat(parts, dim=0))
    return tuple(out)
