# Copyright (c) mmstop contributors. All rights reserved.
"""The DGL prompt machinery the official STOP model is built on.

STOP's released code extends DGL ("Dynamic Global-Local prompt tuning",
AAAI'24); the paper does not describe these parts but the official numbers
depend on them (``docs/stop.md#dgl-prompt-generator``,
``docs/stop.md#token-layout-and-visual-blocks``,
``docs/stop.md#text-encoder-with-deep-prompts``):

* :class:`DGLPromptGenerator`: input-independent deep prompts for every
  layer of both towers, from a shared latent space: ``'transformer'`` (an
  embedding table mapped by one pre-LN transformer block; text prompts through
  an MLP) or ``'linear'`` (one learnable local-prompt table; text prompts by
  two linear projections).
* :class:`Adapter`: ``Linear -> PReLU -> Linear`` on the un-normalised
  residual stream of every CLIP block (the official code calls it "LoRA"; it
  is not a low-rank weight delta), added with a fixed scale.

The global prompts live in the backbone
(:class:`mmstop.models.backbones.STOPCLIP`), the global/local attention
blocks and the token-slot layout in :mod:`mmstop.models.backbones.stop_blocks`.
"""
import math
from collections import OrderedDict
from typing import Tuple

import torch
import torch.nn as nn
from open_clip.transformer import QuickGELU, ResidualAttentionBlock

from mmstop.registry import MODELS


@MODELS.register_module()
class Adapter(nn.Module):
    """Bottleneck adapter ``up(PReLU(down(x)))``.

    The caller adds ``scale * adapter(x)`` to the residual stream (the
    official STOP/DGL scale is 0.1). PyTorch default initialisation, as
    officially (the adapter is not zero at step 0).

    Args:
        embed_dims (int): Input and output width.
        hidden_dims (int): Bottleneck width. Defaults to 32.
    """

    def __init__(self, embed_dims: int, hidden_dims: int = 32) -> None:
        super().__init__()
        self.down = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.PReLU()
        self.up = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


@MODELS.register_module()
class DGLPromptGenerator(nn.Module):
    """Deep text and local visual prompts for every prompted layer.

    ``forward()`` takes no input (the prompts are the same for every sample)
    and returns ``(text_prompts, visual_prompts)``:

    * ``text_prompts``: ``[num_layers, num_text_prefix + num_text_postfix,
      text_dims]``; the first ``num_text_prefix`` go after the SOT token, the
      rest after the last text position.
    * ``visual_prompts``: ``[num_layers, num_local_prompts * num_frames,
      embed_dims]`` in ``'transformer'`` mode (each frame has its own
      prompts; rows ``P*t ... P*t+P-1`` belong to frame ``t``) and
      ``[num_layers, num_local_prompts, embed_dims]`` in ``'linear'`` mode
      (shared by all frames).

    ``'transformer'`` mode: an embedding table of ``num_text + P*T`` rows and
    ``num_layers * embed_dims`` columns; per layer, its rows form one sequence
    mapped by a shared pre-LN transformer block (QuickGELU, ``num_heads``
    heads); text prompts go through ``MLP(embed_dims -> 2*embed_dims ->
    text_dims)``. ``'linear'`` mode: a ``[1, P, num_layers*embed_dims]`` table
    (uniform init ``+-init_bound``); text prompts are ``prefix_proj`` and
    ``postfix_proj`` of the same local prompts, so ``num_text_prefix`` and
    ``num_text_postfix`` must equal ``num_local_prompts`` (or the postfix 0).

    Args:
        mode (str): ``'transformer'`` or ``'linear'``.
        embed_dims (int): Vision width.
        text_dims (int): Text width.
        num_layers (int): Number of prompted layers (prompts per layer).
        num_frames (int): Frames per video (``'transformer'`` mode only).
        num_local_prompts (int): Local prompts per frame. Defaults to 4.
        num_text_prefix (int): Text prompts after SOT. Defaults to 4.
        num_text_postfix (int): Text prompts after the text. The official
            causal text mask makes them inert; kept for parity. Defaults to 4.
        num_heads (int, optional): Heads of the prompt transformer block.
            Defaults to ``embed_dims // 64``.
        init_bound (float, optional): Bound of the uniform init of the
            linear-mode table. Defaults to ``sqrt(6 / (3*32*32 + embed_dims))``
            (the official value for patch size 32).
    """

    def __init__(self,
                 mode: str,
                 embed_dims: int,
                 text_dims: int,
                 num_layers: int,
                 num_frames: int,
                 num_local_prompts: int = 4,
                 num_text_prefix: int = 4,
                 num_text_postfix: int = 4,
                 num_heads: int = None,
                 init_bound: float = None) -> None:
        super().__init__()
        if mode not in ('transformer', 'linear'):
            raise ValueError(
                "prompt_generator must be 'transformer' or 'linear', got "
                f'{mode!r}')
        self.mode = mode
        self.embed_dims = embed_dims
        self.text_dims = text_dims
        self.num_layers = num_layers
        self.num_frames = num_frames
        self.num_local_prompts = num_local_prompts
        self.num_text_prefix = num_text_prefix
        self.num_text_postfix = num_text_postfix
        if init_bound is None:
            init_bound = math.sqrt(6. / float(3 * 32 * 32 + embed_dims))
        if mode == 'transformer':
            rows = (
                num_text_prefix + num_text_postfix +
                num_local_prompts * num_frames)
            self.embedding = nn.Embedding(rows, num_layers * embed_dims)
            heads = num_heads or max(1, embed_dims // 64)
            self.transformer = ResidualAttentionBlock(
                embed_dims, heads, act_layer=QuickGELU, batch_first=True)
            self.text_mlp = nn.Sequential(
                OrderedDict([
                    ('c_fc', nn.Linear(embed_dims, embed_dims * 2)),
                    ('gelu', QuickGELU()),
                    ('c_proj', nn.Linear(embed_dims * 2, text_dims)),
                ]))
        else:
            if (num_text_prefix != num_local_prompts
                    or num_text_postfix not in (0, num_local_prompts)):
                raise ValueError(
                    "'linear' prompt generator projects the local prompts to "
                    'text prompts: num_text_prefix must equal '
                    f'num_local_prompts ({num_local_prompts}) and '
                    'num_text_postfix must be 0 or '
                    f'{num_local_prompts}; got {num_text_prefix} and '
                    f'{num_text_postfix}')
            self.embedding = nn.Parameter(
                torch.empty(1, num_local_prompts, num_layers * embed_dims))
            nn.init.uniform_(self.embedding, -init_bound, init_bound)
            self.prefix_proj = nn.Linear(embed_dims, text_dims)
            self.postfix_proj = nn.Linear(
                embed_dims, text_dims) if num_text_postfix else None

    @property
    def num_text_prompts(self) -> int:
        return self.num_text_prefix + self.num_text_postfix

    def forward(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(text_prompts, visual_prompts)`` (see the class doc)."""
        L, D = self.num_layers, self.embed_dims
        if self.mode == 'transformer':
            table = self.embedding.weight  # [rows, L*D]
            # [L, rows, D]
            seq = table.view(table.shape[0], L, D).transpose(0, 1)
            seq = self.transformer(seq)
            n_text = self.num_text_prompts
            return self.text_mlp(seq[:, :n_text]), seq[:, n_text:]
        local = self.embedding.view(self.num_local_prompts, L,
                                    D).transpose(0, 1)
        text = [self.prefix_proj(local)]
        if self.postfix_proj is not None:
            text.append(self.postfix_proj(local))
        return torch.cat(text, dim=1), local
