# Copyright (c) mmstop contributors. All rights reserved.
"""STOPCLIP on inputs and outputs in the official code's layouts, for the
tests that compare with the golden data (``docs/parity.md#stop-golden-data``)
or with the functional re-derivation of the official forward."""
import torch

# mmstop's intermediates are [B, T, ...]; the official code flattens frames
# with the batch and an inter prompt's slots with the frames
_OFFICIAL_LAYOUT = {
    'h0': lambda t: t.flatten(0, 1),
    'prompted_pixels': lambda t: t.flatten(0, 1),
    'inter_prompt': lambda t: t.flatten(1, 2),
}


def official_layout_forward(model, frames, token_ids):
    """Run ``model(clips, token_ids, return_intermediates=True)`` under
    ``torch.no_grad()``.

    Args:
        model (STOPCLIP): The model.
        frames (torch.Tensor): ``[B*T, 3, H, W]`` (official layout, frame
            ``t`` of video ``b`` at ``b*T + t``).
        token_ids (torch.Tensor): ``[M, L]``.

    Returns:
        dict: Every intermediate, ``h0`` and ``prompted_pixels`` as
        ``[B*T, ...]`` and ``inter_prompt`` as ``[B, T*P, D]``.
    """
    clips = frames.unflatten(0, (-1, model.num_frames)).transpose(1, 2)
    with torch.no_grad():
        out = model(clips, token_ids, return_intermediates=True)[2]
    for key, layout in _OFFICIAL_LAYOUT.items():
        if key in out:
            out[key] = layout(out[key])
    return out
