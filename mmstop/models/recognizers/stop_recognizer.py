# Copyright (c) mmstop contributors. All rights reserved.
"""Action recognition with STOP: video features vs class-name embeddings."""
from typing import Optional, Tuple

import torch
from mmaction.models.recognizers import Recognizer3D
from mmaction.utils import OptSampleList

from mmstop.registry import MODELS


@MODELS.register_module()
class STOPRecognizer(Recognizer3D):
    """MMAction2 ``Recognizer3D`` whose classifier is the text encoder.

    The backbone (:class:`~mmstop.models.backbones.STOPCLIP`) encodes the
    video clips (``[N, C, T, H, W]``, MMAction2's ``NCTHW``) to features; the
    head (:class:`~mmstop.models.heads.TextClassifierHead`) scores them
    against the backbone's text embeddings of the class sentences.

    The recognizer follows MMAction2's ``BaseRecognizer`` contract:
    :meth:`extract_feat` returns the features and the keyword arguments of
    the head, here with ``class_embeddings`` and ``logit_scale`` added, and
    ``BaseRecognizer``'s ``loss``, ``predict`` and ``_forward`` pass them on
    (a neck's ``loss_aux`` is merged into the losses as usual).

    The text prompts train, so the class embeddings are recomputed at every
    training step. Outside training they are computed once and cached; the
    cache is dropped when the model goes back to train mode or loads a state
    dict, and it is only used for the ``class_token_ids`` tensor it was
    computed from: new class names
    (:meth:`~mmstop.models.TextClassifierHead.set_class_names`) or a move to
    another device are recomputed.

    Args:
        backbone (dict): STOP backbone config.
        cls_head (dict): Text-classifier head config.
        **kwargs: Other arguments of MMAction2's ``Recognizer3D``
            (``data_preprocessor``, ``train_cfg``, ``test_cfg``, ``neck``).
    """

    def __init__(self, backbone: dict, cls_head: dict, **kwargs) -> None:
        super().__init__(backbone=backbone, cls_head=cls_head, **kwargs)
        # (class_token_ids it was computed from, embeddings)
        self._class_cache: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._register_load_state_dict_pre_hook(self._drop_cache_hook)

    def _drop_cache_hook(self, *args, **kwargs) -> None:
        self._class_cache = None

    def train(self, mode: bool = True) -> 'STOPRecognizer':
        super().train(mode)
        if mode:
            self._class_cache = None
        return self

    @property
    def text_head(self) -> bool:
        """Whether the head classifies by class sentences (has
        ``class_token_ids``). MMAction2's ``clip_feature_extraction.py``
        replaces it by a ``FeatureHead``, which takes the video features
        alone: then no class embeddings are computed."""
        return hasattr(self.cls_head, 'class_token_ids')

    def class_embeddings(self) -> torch.Tensor:
        """Text embeddings ``[num_classes, D]`` of the class sentences.

        Outside training the result is cached. While the model is traced
        (``torch.jit.trace``, e.g. by FLOP counters) the cache is read but
        never written: a tensor computed inside one trace and kept for the
        next call would not belong to that call's trace (MMAction2's
        ``get_flops.py`` traces the model twice).
        """
        ids = self.cls_head.class_token_ids
        if not self.training and self._class_cache is not None and \
                self._class_cache[0] is ids:
            return self._class_cache[1]
        embeddings = self.backbone.encode_text(ids)
        if not self.training and not torch.jit.is_tracing():
            self._class_cache = (ids, embeddings.detach())
        return embeddings

    def extract_feat(self,
                     inputs: torch.Tensor,
                     stage: str = 'neck',
                     data_samples: OptSampleList = None,
                     test_mode: bool = False) -> Tuple[torch.Tensor, dict]:
        """Features of ``stage`` and the keyword arguments of the head.

        ``Recognizer3D.extract_feat``, with ``class_embeddings``
        (:meth:`class_embeddings`) and ``logit_scale`` (the backbone's) added
        to the returned kwargs whenever the head may run (``stage`` ``'neck'``
        or ``'head'``, or ``test_mode``) and classifies by class sentences
        (:attr:`text_head`); ``stage='head'`` returns the class logits.

        Args:
            inputs (torch.Tensor): Clips ``[N, num_views, C, T, H, W]``.
            stage (str): ``'backbone'``, ``'neck'`` or ``'head'``. Defaults to
                ``'neck'``.
            data_samples (list[ActionDataSample], optional): Passed to the
                neck in training. Defaults to None.
            test_mode (bool): Whether in test mode. Defaults to False.

        Returns:
            tuple: The features (or logits) and the kwargs of the head's
            ``loss`` / ``predict``.
        """
        head = stage == 'head' and not test_mode
        feats, kwargs = super().extract_feat(
            inputs,
            stage='neck' if head else stage,
            data_samples=data_samples,
            test_mode=test_mode)
        if stage == 'backbone' and not test_mode:
            return feats, kwargs
        if self.text_head:
            kwargs.update(
                class_embeddings=self.class_embeddings(),
                logit_scale=self.backbone.logit_scale)
        if head and self.with_cls_head:
            feats = self.cls_head(feats, **kwargs)
        return feats, kwargs
