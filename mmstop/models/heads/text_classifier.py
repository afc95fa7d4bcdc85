# Copyright (c) mmstop contributors. All rights reserved.
"""Classifier whose weights are text embeddings of the class names."""
import contextlib
import logging
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmaction.models.heads import BaseHead
from mmengine.logging import print_log
from open_clip.tokenizer import SimpleTokenizer

from mmstop.registry import MODELS
from mmstop.utils.annotations import load_class_names


@MODELS.register_module()
class TextClassifierHead(BaseHead):
    """Cosine-similarity classifier over class-name text embeddings.

    STOP's action-recognition head (paper equation 14): every class ``k`` is
    the sentence ``template.format(name_k)`` (``"a video of a person doing
    {}"``), encoded by the (prompted) text encoder of the backbone into
    ``s_k``; the logits of a video feature ``v`` are ``cos(v, s_k) / tau``
    and the loss is the softmax cross-entropy over the classes.

    The head holds the tokenised class sentences (``class_token_ids``: CLIP's
    BPE by open_clip's tokenizer, ``[SOT, tokens, EOT]`` zero padded, the ids
    the ``TokenizeText`` transform gives captions; a sentence longer than
    ``context_length`` keeps its first ``context_length - 2`` tokens and is
    logged as a warning); the recognizer encodes them with the backbone and
    passes the embeddings to :meth:`forward` (see
    :class:`mmstop.models.STOPRecognizer`).

    Args:
        class_names (str | Sequence[str]): A text file with one class name
            per line (line ``i`` is class ``i``) or the names themselves.
        template (str): Sentence with one ``{}`` for the class name.
            Defaults to ``'a video of a person doing {}'``.
        context_length (int): Token ids per sentence, SOT and EOT included.
            Defaults to 32.
        tau (float, optional): Temperature. ``None`` uses the backbone's
            frozen CLIP scale, ``1 / exp(logit_scale)`` (0.01 for OpenAI CLIP).
            Defaults to None.
        num_classes (int, optional): Checked against the number of names when
            given. Defaults to None (the number of names).
        in_channels (int): Feature width (informational). Defaults to 512.
        loss_cls (dict): Loss config. Defaults to
            ``dict(type='CrossEntropyLoss')``.
        average_clips (str, optional): Multi-view averaging, ``'prob'``,
            ``'score'`` or None. Defaults to ``'prob'``.
        **kwargs: Other arguments of :class:`mmaction.models.heads.BaseHead`
            (``topk``, ``label_smooth_eps``, ...).
    """

    def __init__(self,
                 class_names: Union[str, Sequence[str]],
                 template: str = 'a video of a person doing {}',
                 context_length: int = 32,
                 tau: Optional[float] = None,
                 num_classes: Optional[int] = None,
                 in_channels: int = 512,
                 loss_cls: dict = dict(type='CrossEntropyLoss'),
                 average_clips: Optional[str] = 'prob',
                 **kwargs) -> None:
        names = self._read_names(class_names)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f'num_classes={num_classes} but {len(names)} class names were '
                'given '
                f'({class_names if isinstance(class_names, str) else "list"})')
        if '{}' not in template:
            raise ValueError(
                "template must contain '{}' for the class name, got "
                f'{template!r}')
        super().__init__(
            num_classes=len(names),
            in_channels=in_channels,
            loss_cls=loss_cls,
            average_clips=average_clips,
            **kwargs)
        if tau is not None and tau <= 0:
            raise ValueError(f'tau must be positive, got {tau}')
        if int(context_length) < 2:
            raise ValueError('context_length must be >= 2 (SOT and EOT), '
                             f'got {context_length}')
        self.template = template
        self.context_length = int(context_length)
        self.tau = tau
        self.set_class_names(names)

    def set_class_names(self, class_names: Union[str, Sequence[str]]) -> None:
        """Classify into these classes from now on (open vocabulary).

        The sentences are tokenised again; ``num_classes`` follows. A
        :class:`~mmstop.models.STOPRecognizer` recomputes its cached class
        embeddings at its next forward (the cache belongs to the
        ``class_token_ids`` tensor this replaces).

        Args:
            class_names (str | Sequence[str]): A text file with one class
                name per line or the names themselves.
        """
        names = self._read_names(class_names)
        ids = self._tokenize([self.template.format(n) for n in names],
                             self.context_length)
        old = getattr(self, 'class_token_ids', None)
        if old is not None:
            ids = ids.to(old.device)
        self.class_names = names
        self.num_classes = len(names)
        # not persistent: the class list comes from the config, not the weights
        self.register_buffer('class_token_ids', ids, persistent=False)

    @staticmethod
    def _tokenize(sentences: List[str], context_length: int) -> torch.Tensor:
        """CLIP token ids ``[len(sentences), context_length]``; warns about
        the sentences that had to be truncated."""
        tokenizer = SimpleTokenizer()
        long = [
            s for s in sentences
            if len(tokenizer.encode(s)) > context_length - 2
        ]
        if long:
            print_log(
                f'TextClassifierHead: {len(long)} class sentence(s) have more '
                f'than {context_length - 2} BPE tokens (context_length='
                f'{context_length}) and were truncated, e.g. {long[0]!r}',
                logger='current',
                level=logging.WARNING)
        return tokenizer(sentences, context_length=context_length)

    @staticmethod
    def _read_names(class_names) -> List[str]:
        if isinstance(class_names, str):
            return load_class_names(class_names)
        names = [str(n) for n in class_names]
        if not names:
            raise ValueError('class_names is empty')
        return names

    def forward(self,
                x: torch.Tensor,
                class_embeddings: torch.Tensor = None,
                logit_scale: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """Cosine logits ``[N, num_classes]``, in fp32 (fp64 for fp64
        features), also under autocast.

        Args:
            x (torch.Tensor): Video features ``[N, D]``.
            class_embeddings (torch.Tensor): Class text embeddings
                ``[num_classes, D]``.
            logit_scale (torch.Tensor, optional): ``ln(1/tau)`` used when the
                head has no fixed ``tau``.
        """
        if class_embeddings is None:
            raise ValueError(
                'TextClassifierHead needs the class text embeddings; build it '
                'inside a STOPRecognizer, which encodes class_token_ids')
        if class_embeddings.shape[0] != self.num_classes:
            raise ValueError(
                f'got {class_embeddings.shape[0]} class embeddings for '
                f'{self.num_classes} classes')
        if self.tau is not None:
            scale = 1.0 / self.tau
        elif logit_scale is not None:
            scale = logit_scale.exp()
        else:
            raise ValueError('TextClassifierHead: set tau or pass logit_scale')
        # fp32 even under autocast: the logits are cosines times 1/tau
        # (100 for CLIP), where bf16 would resolve steps of 0.5
        dtype = torch.promote_types(x.dtype, torch.float32)
        # (devices without autocast, e.g. 'meta' for counting MACs, have
        # nothing to switch off)
        no_autocast = torch.autocast(x.device.type, enabled=False) \
            if torch.amp.is_autocast_available(x.device.type) \
            else contextlib.nullcontext()
        with no_autocast:
            v = F.normalize(x.to(dtype), dim=-1)
            s = F.normalize(class_embeddings.to(dtype), dim=-1)
            return scale * v @ s.t()
