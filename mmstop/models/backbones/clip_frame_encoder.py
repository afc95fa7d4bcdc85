# Copyright (c) mmstop contributors. All rights reserved.
"""A frozen CLIP applied frame by frame: the baselines of STOP.

:class:`CLIPFrameEncoder` encodes every frame of a clip with CLIP's image
tower and averages the L2-normalised frame embeddings into one video feature;
it also exposes CLIP's text tower (``encode_text``) and ``logit_scale``, the
interface :class:`~mmstop.models.STOPRecognizer` reads. So

* ``STOPRecognizer`` + ``CLIPFrameEncoder`` + ``TextClassifierHead`` is
  zero-shot CLIP (cosine between the frame-averaged image feature and the
  class-name text features, nothing trained), and
* ``Recognizer3D`` + ``CLIPFrameEncoder`` + a linear head is a linear probe
  of the frozen CLIP.

Weights come from the same loader as :class:`STOPCLIP`'s (OpenAI parameter
names), so any checkpoint STOP reads works here.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from mmstop.registry import MODELS
from ..clip import build_open_clip, load_clip_state_dict, read_clip_checkpoint
from ..clip.builder import resolve_clip_arch


@MODELS.register_module()
class CLIPFrameEncoder(BaseModule):
    """Frozen CLIP image tower per frame, frame features averaged.

    Args:
        arch (str | dict): CLIP architecture, as for :class:`STOPCLIP`
            (a key of :data:`mmstop.models.clip.CLIP_ARCHS` or a dict,
            optionally with ``base``). Defaults to ``'vit-b32'``.
        pretrained (str, optional): CLIP checkpoint (OpenAI TorchScript
            archive or state dict with OpenAI names), loaded strictly by
            :meth:`init_weights`. Defaults to None.
        normalize (bool): L2-normalise each frame's embedding before the
            average. Defaults to True.
        freeze (bool): Freeze CLIP (the tower also stays in eval mode).
            Defaults to True.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'vit-b32',
                 pretrained: Optional[str] = None,
                 normalize: bool = True,
                 freeze: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_clip_arch(arch)
        self.clip = build_open_clip(self.arch)
        self.embed_dims = self.arch['embed_dims']
        self.pretrained = pretrained
        self.normalize = normalize
        self.freeze = freeze
        if freeze:
            self.clip.requires_grad_(False)

    def init_weights(self) -> None:
        """Load ``pretrained`` (if any) after MMEngine's init."""
        super().init_weights()
        if self.pretrained is not None:
            load_clip_state_dict(
                self.clip,
                read_clip_checkpoint(self.pretrained),
                source=self.pretrained)
            MMLogger.get_current_instance().info(
                f'loaded CLIP weights from {self.pretrained}')

    def train(self, mode: bool = True) -> 'CLIPFrameEncoder':
        """Set train mode; a frozen CLIP stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.clip.eval()
        return self

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's ``logit_scale`` (``ln(1/tau)``)."""
        return self.clip.logit_scale

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """CLIP text features ``[B, embed_dims]`` of token ids ``[B, L]``
        (``L`` at most the context length; the EOT token has the largest
        id of each row)."""
        context = self.clip.positional_embedding.shape[0]
        if token_ids.dim() != 2 or token_ids.shape[1] > context:
            raise ValueError(
                f'token ids must be [B, L] with L <= {context}, got '
                f'{list(token_ids.shape)}')
        if token_ids.shape[1] < context:
            token_ids = F.pad(token_ids, (0, context - token_ids.shape[1]))
        return self.clip.encode_text(token_ids)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Clips ``[N, C, T, H, W]`` (MMAction2's ``NCTHW``) -> the average
        of the frame embeddings ``[N, embed_dims]``."""
        if inputs.dim() != 5:
            raise ValueError('CLIPFrameEncoder expects clips [N, C, T, H, W], '
                             f'got {list(inputs.shape)}')
        n, c, t, h, w = inputs.shape
        frames = inputs.transpose(1, 2).reshape(n * t, c, h, w)
        feats = self.clip.encode_image(frames)
        if self.normalize:
            feats = F.normalize(feats, dim=-1)
        return feats.reshape(n, t, -1).mean(dim=1)
