# Copyright (c) mmstop contributors. All rights reserved.
"""Text-video retrieval with STOP (``STOPSimilarity``).

The model encodes videos and captions with a
:class:`~mmstop.models.backbones.STOPCLIP` backbone and trains the prompts
with the symmetric InfoNCE loss of the paper (equation 15), computed as the
official code does (``docs/stop.md#similarity-temperature-and-loss``):

* the video and text features of every process are all-gathered into the
  global batch (rank order, so every process builds the same similarity
  layout; :func:`~mmstop.models.similarity.gather.gather_features`);
* ``S = exp(logit_scale) * t_hat @ v_hat.T`` over the global batch, rows are
  captions, columns videos, the positive pairs on the diagonal, with the
  backbone's frozen CLIP ``logit_scale`` (ln 100, i.e. ``S = 100 cos``);
* ``loss = (CE(S) + CE(S.T)) / 2`` with ``CE`` the mean over rows of
  ``-log softmax(row)[diagonal]``.

Gradient scale under DDP (``gather_grad``). DDP averages the parameter
gradients over the ``W`` processes. With the official gather
(``'local'``: only each process's own rows carry gradient) the step gets
``1 / W`` of the gradient that one process holding the whole global batch
would compute; ``'exact'`` (the backward of the gather sums over processes)
gives that single-process gradient exactly. AdamW is invariant to a constant
gradient scale up to its ``eps``, but the gradient clipping is not: with
``'local'`` and ``clip_grad max_norm=c`` the clipping acts as ``c * W`` on
the full-batch gradient (the official MSR-VTT recipe, 4 GPUs and ``c = 1``:
4 on the full-batch gradient). To reproduce an official ``W``-GPU run with
another number of processes ``W'`` at the same global batch, keep
``'local'`` and scale ``max_norm`` by ``W / W'`` (or use ``'exact'`` and
``max_norm = W``).

Several captions of one video in a global batch (``caption_mode='unfold'``)
are treated as negatives of each other, as in the official code.

Evaluation: official-mode video features depend on the other videos of the
batch (the inter-frame scores are min-max normalised over every frame of the
batch, ``inter_prompt.normalize='batch'``). Evaluate with a fixed batch size
(the official scripts use 16, on one process: with ``W`` processes MMEngine's
``DefaultSampler`` interleaves the samples, so the batches hold other videos).
``predict`` logs the batch size and world size once at the start of every
evaluation.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.structures import InstanceData

from mmstop.registry import MODELS
from .gather import GATHER_GRADS, gather_features


def symmetric_info_nce(text: torch.Tensor, video: torch.Tensor,
                       logit_scale: Union[torch.Tensor, float]
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two halves of the symmetric InfoNCE loss (paper equation 15).

    Args:
        text (torch.Tensor): Caption features ``[N, D]`` (not normalised).
        video (torch.Tensor): Video features ``[N, D]``; row ``i`` is the
            video of caption ``i``.
        logit_scale (torch.Tensor | float): ``ln(1 / tau)``; the similarity
            is ``exp(logit_scale) * cos``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(CE(S), CE(S.T))``, the
        text-to-video and video-to-text cross-entropies (means over rows);
        the loss is their mean.
    """
    if text.shape != video.shape or text.dim() != 2:
        raise ValueError('text and video features must both be [N, D], got '
                         f'{tuple(text.shape)} and {tuple(video.shape)}')
    # fp32 even under autocast (a matmul would run in fp16/bf16 there): the
    # similarities are cosines times 1/tau (100 for CLIP)
    with torch.autocast(text.device.type, enabled=False):
        text = F.normalize(text.float(), dim=-1)
        video = F.normalize(video.float(), dim=-1)
        scale = torch.as_tensor(
            logit_scale, dtype=text.dtype, device=text.device).exp()
        sim = scale * text @ video.t()
        labels = torch.arange(sim.shape[0], device=sim.device)
        return F.cross_entropy(sim, labels), F.cross_entropy(sim.t(), labels)


@MODELS.register_module()
class STOPSimilarity(BaseModel):
    """STOP text-video retrieval model (see the module docstring).

    Inputs follow the data contract of
    :class:`~mmstop.datasets.transforms.PackVideoTextInputs`: ``inputs``
    ``[B, T, 3, H, W]`` (normalised by the data preprocessor,
    ``ActionDataPreprocessor(format_shape='NCHW')``) and per data sample
    ``text_ids`` ``[n_i, L]`` (``n_i = 1`` in training, all captions of the
    video at test time).

    Args:
        backbone (dict): :class:`~mmstop.models.backbones.STOPCLIP` config.
        data_preprocessor (dict, optional): Data preprocessor config.
            Defaults to None (MMEngine's ``BaseDataPreprocessor``).
        gather_grad (str): Gradient rule of the cross-process gather:
            ``'local'`` (official CLIP4Clip/STOP: only the local rows keep
            their gradient, so DDP steps with ``1 / world_size`` of the
            single-process full-batch gradient) or ``'exact'`` (the gather's
            backward sums over processes: DDP steps with the exact
            single-process gradient). Defaults to ``'local'``.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 data_preprocessor: Optional[dict] = None,
                 gather_grad: str = 'local',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if gather_grad not in GATHER_GRADS:
            raise ValueError(f'gather_grad must be one of {GATHER_GRADS}, '
                             f'got {gather_grad!r}')
        self.gather_grad = gather_grad
        self.backbone = MODELS.build(backbone)
        self._eval_logged = False
        self._multi_caption_logged = False

    # ------------------------------------------------------------------
    @property
    def batch_dependent(self) -> bool:
        """Whether a video's feature depends on the rest of its batch."""
        inter = getattr(self.backbone, 'inter_prompt', None)
        return getattr(inter, 'normalize', None) == 'batch'

    def train(self, mode: bool = True) -> 'STOPSimilarity':
        super().train(mode)
        if mode:  # log again at the next evaluation
            self._eval_logged = self._multi_caption_logged = False
        return self

    @staticmethod
    def _text_ids(data_samples: Sequence) -> Tuple[torch.Tensor, List[int]]:
        """Concatenated caption ids ``[sum n_i, L]`` and the counts ``n_i``."""
        if not data_samples:
            raise ValueError('STOPSimilarity needs data samples with '
                             '"text_ids" (from PackVideoTextInputs)')
        ids = []
        for i, ds in enumerate(data_samples):
            t = getattr(ds, 'text_ids', None)
            if t is None:
                raise KeyError(
                    f'data sample {i} has no "text_ids"; put TokenizeText '
                    'and PackVideoTextInputs in the pipeline')
            if t.dim() == 1:
                t = t[None]
            if t.dim() != 2 or t.shape[0] == 0:
                raise ValueError(f'data sample {i}: text_ids must be '
                                 f'[n_captions, L], got {tuple(t.shape)}')
            ids.append(t)
        lengths = {t.shape[1] for t in ids}
        if len(lengths) != 1:
            raise ValueError(
                'all captions of a batch need the same token length '
                f'(TokenizeText context_length), got {sorted(lengths)}')
        return torch.cat(ids).long(), [t.shape[0] for t in ids]

    def encode_video(self,
                     frames: torch.Tensor,
                     visual_prompts: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Video features ``[B, D]`` of frames ``[B, T, 3, H, W]``."""
        return self.backbone.encode_video(frames, visual_prompts)

    def encode_text(self,
                    token_ids: torch.Tensor,
                    text_prompts: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """Caption features ``[N, D]`` of token ids ``[N, L]``."""
        return self.backbone.encode_text(token_ids, text_prompts)

    def extract_feat(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[Sequence] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[List[int]]]:
        """Video and caption features with the prompts computed once.

        Returns:
            tuple: video features ``[B, D]``, caption features
            ``[sum n_i, D]`` (None without data samples) and the caption
            counts ``n_i`` (None without data samples).
        """
        text_prompts, visual_prompts = self.backbone.prompt_generator()
        video = self.encode_video(inputs, visual_prompts)
        if data_samples is None:
            return video, None, None
        ids, counts = self._text_ids(data_samples)
        if len(counts) != video.shape[0]:
            raise ValueError(f'{video.shape[0]} videos but '
                             f'{len(counts)} data samples')
        text = self.encode_text(ids.to(video.device), text_prompts)
        return video, text, counts

    # ------------------------------------------------------------------
    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[Sequence] = None,
                mode: str = 'tensor'):
        """MMEngine entry: ``mode`` is ``'loss'``, ``'predict'`` or
        ``'tensor'``."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode {mode!r}; only "loss", "predict" '
                           'and "tensor" are supported')

    def loss(self, inputs: torch.Tensor, data_samples: Sequence) -> dict:
        """Symmetric InfoNCE over the batch gathered across processes.

        Every training sample must carry exactly one caption.

        Returns:
            dict: ``loss_sim`` (the loss, ``(CE(S) + CE(S.T)) / 2``) and,
            for logging only, ``global_batch`` (the gathered batch size).
        """
        video, text, counts = self.extract_feat(inputs, data_samples)
        if any(c != 1 for c in counts):
            raise ValueError(
                'STOPSimilarity.loss needs exactly one caption per training '
                f'sample, got caption counts {counts}; use caption_mode '
                "'random' or 'unfold' for the training set")
        video, text = gather_features(video, text, grad=self.gather_grad)
        t2v, v2t = symmetric_info_nce(text, video, self.backbone.logit_scale)
        return dict(
            loss_sim=(t2v + v2t) / 2,
            global_batch=torch.tensor(
                float(video.shape[0]), device=video.device))

    def _log_eval_start(self, batch_size: int) -> None:
        if self._eval_logged:
            return
        self._eval_logged = True
        note = ('official-mode video features depend on the other videos '
                'of the batch (inter-frame scores min-max normalised over '
                'the batch): results are comparable only at the same batch '
                'size, number of processes and sample order (official: 16 '
                'per batch on one process; the last batch may be smaller)'
                if self.batch_dependent else
                'video features do not depend on the batch')
        print_log(
            f'STOPSimilarity evaluation: batch size {batch_size} per '
            f'process, {get_world_size()} process(es); {note}',
            logger='current')

    def predict(self, inputs: torch.Tensor, data_samples: Sequence):
        """Features for the retrieval metric.

        Sets ``video_feature`` ``[D]`` and ``text_feature`` ``[n_i, D]``
        (rows in ``text_ids`` order; not normalised) on every data sample,
        which :class:`~mmstop.evaluation.VideoTextRetrievalMetric` reads.
        A sample with one caption also gets ``features``, an
        ``InstanceData(video_feature=[D], text_feature=[D])``: the field
        MMAction2's ``RetrievalMetric`` reads (as MMAction2's
        ``CLIPSimilarity`` writes it). That metric takes one caption per
        video, so samples with several captions do not get it (logged once
        per evaluation).

        Returns:
            list: The data samples.
        """
        self._log_eval_start(inputs.shape[0])
        video, text, counts = self.extract_feat(inputs, data_samples)
        # clones: a view would carry (and pickle, e.g. with --dump) the
        # storage of the whole batch
        for ds, vf, tf in zip(data_samples, video, text.split(counts)):
            vf, tf = vf.clone(), tf.clone()
            ds.set_field(vf, 'video_feature')
            ds.set_field(tf, 'text_feature')
            if tf.shape[0] == 1:
                ds.features = InstanceData(
                    video_feature=vf, text_feature=tf[0])
        if any(c > 1 for c in counts) and not self._multi_caption_logged:
            self._multi_caption_logged = True
            print_log(
                'STOPSimilarity: samples with several captions have no '
                '"features" field (MMAction2\'s RetrievalMetric takes one '
                'caption per video); VideoTextRetrievalMetric reads '
                'video_feature / text_feature',
                logger='current')
        return data_samples

    def _forward(self,
                 inputs: torch.Tensor,
                 data_samples: Optional[Sequence] = None):
        """Tensor mode: ``(video [B, D], text [sum n_i, D] or None)``."""
        video, text, _ = self.extract_feat(inputs, data_samples)
        return video, text
