# Copyright (c) mmstop contributors. All rights reserved.
"""Action recognition with STOP: video features vs class-name embeddings."""
from typing import Optional

import torch
from mmaction.models.recognizers import Recognizer3D

from mmstop.registry import MODELS


@MODELS.register_module()
class STOPRecognizer(Recognizer3D):
    """MMAction2 ``Recognizer3D`` whose classifier is the text encoder.

    The backbone (:class:`~mmstop.models.backbones.STOPCLIP`) encodes the
    video clips (``[N, C, T, H, W]``, MMAction2's ``NCTHW``) to features; the
    head (:class:`~mmstop.models.heads.TextClassifierHead`) scores them
    against the backbone's text embeddings of the class sentences.

    The text prompts train, so the class embeddings are recomputed at every
    training step. Outside training they are computed once and cached; the
    cache is dropped when the model goes back to train mode or loads a state
    dict.

    Args:
        backbone (dict): STOP backbone config.
        cls_head (dict): Text-classifier head config.
        **kwargs: Other arguments of MMAction2's ``Recognizer3D``
            (``data_preprocessor``, ``train_cfg``, ``test_cfg``, ``neck``).
    """

    def __init__(self, backbone: dict, cls_head: dict, **kwargs) -> None:
        super().__init__(backbone=backbone, cls_head=cls_head, **kwargs)
        self._class_cache: Optional[torch.Tensor] = None
        self._register_load_state_dict_pre_hook(self._drop_cache_hook)

    def _drop_cache_hook(self, *args, **kwargs) -> None:
        self._class_cache = None

    def train(self, mode: bool = True) -> 'STOPRecognizer':
        super().train(mode)
        if mode:
            self._class_cache = None
        return self

    def class_embeddings(self) -> torch.Tensor:
        """Text embeddings ``[num_classes, D]`` of the class sentences."""
        if not self.training and self._class_cache is not None:
            return self._class_cache
        embeddings = self.backbone.encode_text(self.cls_head.class_token_ids)
        if not self.training:
            self._class_cache = embeddings.detach()
        return embeddings

    def _head_kwargs(self) -> dict:
        return dict(class_embeddings=self.class_embeddings(),
                    logit_scale=self.backbone.logit_scale)

    def loss(self, inputs: torch.Tensor, data_samples, **kwargs) -> dict:
        feats, loss_kwargs = self.extract_feat(inputs, data_samples=data_samples)
        loss_kwargs.pop('loss_aux', None)
        return self.cls_head.loss(feats, data_samples, **loss_kwargs,
                                  **self._head_kwargs())

    def predict(self, inputs: torch.Tensor, data_samples, **kwargs):
        feats, predict_kwargs = self.extract_feat(inputs, test_mode=True)
        return self.cls_head.predict(feats, data_samples, **predict_kwargs,
                                     **self._head_kwargs())

    def _forward(self, inputs: torch.Tensor, stage: str = 'backbone',
                 **kwargs):
        """Backbone features, or class logits with ``stage='head'``."""
        feats, _ = self.extract_feat(inputs, stage='backbone')
        if stage == 'head':
            return self.cls_head(feats, **self._head_kwargs())
        return feats
