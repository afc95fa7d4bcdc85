# Copyright (c) mmstop contributors. All rights reserved.
"""Score normalisation shared by the STOP prompt modules."""
from typing import Optional

import torch


def minmax_normalize(scores: torch.Tensor,
                     dim: Optional[int] = -1,
                     constant_to_zero: bool = True) -> torch.Tensor:
    """Min-max normalise ``scores`` to ``[0, 1]``.

    Args:
        scores (torch.Tensor): Scores of any shape.
        dim (int, optional): Axis whose minimum and maximum are used (each
            slice along it is normalised on its own); None: all entries
            together. Defaults to -1.
        constant_to_zero (bool): Map slices whose entries are all equal to 0.
            False computes ``(x - min) / (max - min)`` as it stands, so such a
            slice is 0/0 = NaN (the official STOP inter prompt's batch
            normalisation). Defaults to True.

    Returns:
        torch.Tensor: Normalised scores, the shape of ``scores``.
    """
    if dim is None:
        low, high = scores.amin(), scores.amax()
    else:
        low = scores.amin(dim=dim, keepdim=True)
        high = scores.amax(dim=dim, keepdim=True)
    span = high - low
    if not constant_to_zero:
        return (scores - low) / span
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (scores - low) / safe,
                       torch.zeros_like(scores))
