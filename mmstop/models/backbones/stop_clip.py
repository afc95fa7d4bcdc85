# Copyright (c) mmstop contributors. All rights reserved.
"""STOP: a frozen CLIP adapted to video with spatial and temporal prompts.

:class:`STOPCLIP` wraps open_clip's ViT and text transformer (OpenAI parameter
names, so OpenAI checkpoints load unchanged) and adds the prompt modules of
STOP (CVPR 2025) and of DGL, on which the official STOP code is built. With
the default options it computes exactly what the official code computes
(``mode='official'`` everywhere; proved against the golden data of the
official code in ``tests/models/test_stop_parity.py``, see
``docs/parity.md#stop-golden-data``).

Video path (``encode_video``; ``docs/stop.md#the-official-forward``), for
frames ``[B, T, 3, H, W]``:

1. intra-frame prompt (``intra_prompt``), before the patch embedding on the
   pixels (official) or at the input of some layers on the tokens (paper);
2. frozen patch embedding -> ``h0`` ``[B, T, 1+N, D]`` (CLS first);
3. inter-frame prompt (``inter_prompt``) from the layer-0 tokens and the
   intra region mask: added to the DGL local prompts of every layer
   (official) or placed in extra slots of every frame, the unused ones masked
   as attention keys (paper);
4. token layout: ``num_global_prompts`` global tokens per video, and per
   frame ``[CLS, local prompts, inter slots, N patches]``; before every
   layer ``l >= 1`` the slots are *replaced* by that layer's prompts;
5. each block: frame tokens attend to their video's global tokens and their
   own frame; global tokens attend to the whole video; then
   ``x + MLP(LN(x)) + adapter_scale * Adapter(x)``;
6. ``pool``: the first global token (official), the mean of the global
   tokens, or the mean of the frame CLS tokens, after ``ln_post`` and ``proj``.

The prompt modules are called only through the hooks of
:mod:`mmstop.models.prompts.base` (steps 1 and 3); the blocks and the slot
layout (steps 4-5) are in :mod:`.stop_blocks`.

Text path (``encode_text``, ``docs/stop.md#text-encoder-with-deep-prompts``):
``[SOT, prefix prompts, tokens, postfix prompts]`` with positional embeddings
added before the prompts are inserted, prompts replaced before every layer
``l >= 1``, causal mask, feature at the EOT token.
"""
import math
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from mmstop.registry import MODELS
from mmstop.utils.checkpoint import (load_checkpoint_checked,
                                     split_pretrained_init_cfg)
from ..clip import build_open_clip, load_clip_state_dict, read_clip_checkpoint
from ..clip.builder import resolve_clip_arch
from ..prompts.base import STOPPromptModule
from ..prompts.dgl import Adapter, DGLPromptGenerator
from ..prompts.stop_inter import build_inter_frame_prompt
from ..prompts.stop_intra import build_intra_frame_prompt
from .stop_blocks import FrameTokenSlots, global_local_block, text_block

#: Name fragments of the parameters that train; everything else (both CLIP
#: towers, ``logit_scale``) is frozen.
TRAINABLE_PREFIXES = ('intra_prompt.', 'inter_prompt.', 'prompt_generator.',
                      'global_prompts', 'visual_adapters.', 'text_adapters.')


@MODELS.register_module()
class STOPCLIP(BaseModule):
    """STOP video and text encoders on a frozen CLIP.

    Args:
        arch (str | dict): CLIP architecture, a key of
            :data:`mmstop.models.clip.CLIP_ARCHS` (``'vit-b32'``,
            ``'vit-b16'``, ``'tiny'``) or a dict (optionally with ``base``)
            defining ``embed_dims, image_size, patch_size, vision_width,
            vision_layers, vision_heads, context_length, vocab_size,
            text_width, text_heads, text_layers``. Defaults to ``'vit-b32'``.
        num_frames (int): Frames per video ``T``. The ``'transformer'``
            prompt generator learns prompts per frame index, so ``T`` is part
            of the architecture. Defaults to 12.
        prompt_generator (str): DGL prompt generator, ``'transformer'`` or
            ``'linear'``. Defaults to ``'transformer'``.
        num_global_prompts (int): Global prompt tokens per video. Defaults
            to 4.
        num_local_prompts (int): Local prompt tokens per frame (also the
            number of inter-frame prompts per frame). Defaults to 4.
        num_text_prompts (int): Deep text prompts per layer, split evenly
            into prefix and postfix. Defaults to 8.
        text_postfix_prompts (bool): Insert the postfix half. The causal mask
            makes them inert (their gradient is 0), but the official model has
            them. Defaults to True.
        intra_prompt (dict, optional): ``dict(mode='official'|'paper',
            **options)`` for the intra-frame spatial prompt, ``None`` to
            disable; the options are those of
            :class:`~mmstop.models.prompts.PixelIntraFramePrompt` (official)
            or :class:`~mmstop.models.prompts.TokenIntraFramePrompt` (paper),
            sizes filled in by the backbone. ``dict(type=..., **options)``
            builds any registered
            :class:`~mmstop.models.prompts.BaseIntraFramePrompt`.
            Defaults to ``dict(mode='official')``.
        inter_prompt (dict, optional): ``dict(mode='official'|'paper',
            **options)`` for the inter-frame temporal prompt, ``None`` to
            disable; options of
            :class:`~mmstop.models.prompts.AttentiveInterFramePrompt` or
            :class:`~mmstop.models.prompts.DynamicInterFramePrompt`;
            ``dict(type=..., **options)`` builds any registered
            :class:`~mmstop.models.prompts.BaseInterFramePrompt`. Either mode
            combines with any intra mode. Defaults to
            ``dict(mode='official')``.
        adapter (dict, optional): ``dict(hidden_dims=32, scale=0.1)`` for the
            adapters of all CLIP blocks, ``None`` to disable. Defaults to
            ``dict(hidden_dims=32, scale=0.1)``.
        pool (str): Video feature: ``'global0'`` (official: first global
            token), ``'mean_global'`` or ``'mean_cls'``. Defaults to
            ``'global0'``.
        pretrained (str, optional): CLIP checkpoint (OpenAI TorchScript
            archive or state dict), loaded by :meth:`init_weights`.
            Defaults to None (random CLIP, e.g. for the demo).
        freeze_clip (bool): Freeze both CLIP towers and ``logit_scale``.
            Defaults to True.
        init_cfg (dict, optional): MMEngine init config; a ``Pretrained``
            entry (a whole STOPCLIP checkpoint, e.g. a converted official
            one) is loaded strictly, see :meth:`init_weights`.
            Defaults to None.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'vit-b32',
                 num_frames: int = 12,
                 prompt_generator: str = 'transformer',
                 num_global_prompts: int = 4,
                 num_local_prompts: int = 4,
                 num_text_prompts: int = 8,
                 text_postfix_prompts: bool = True,
                 intra_prompt: Optional[dict] = dict(mode='official'),
                 inter_prompt: Optional[dict] = dict(mode='official'),
                 adapter: Optional[dict] = dict(hidden_dims=32, scale=0.1),
                 pool: str = 'global0',
                 pretrained: Optional[str] = None,
                 freeze_clip: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_clip_arch(arch)
        self.clip = build_open_clip(self.arch)
        a = self.arch
        self.num_frames = num_frames
        self.embed_dims = a['embed_dims']
        self.vision_width = a['vision_width']
        self.text_width = a['text_width']
        self.patch_size = a['patch_size']
        self.image_size = a['image_size']
        self.grid_size = a['image_size'] // a['patch_size']
        self.num_patches = self.grid_size**2
        self.num_global_prompts = num_global_prompts
        self.num_local_prompts = num_local_prompts
        if pool not in ('global0', 'mean_global', 'mean_cls'):
            raise ValueError("pool must be 'global0', 'mean_global' or "
                             f"'mean_cls', got {pool!r}")
        self.pool = pool
        self.pretrained = pretrained
        self.freeze_clip = freeze_clip

        # uniform init bound of the official global prompts (xavier-like)
        bound = math.sqrt(6. /
                          float(3 * self.patch_size**2 + self.vision_width))
        self.global_prompts = nn.Parameter(
            torch.empty(1, num_global_prompts, self.vision_width))
        nn.init.uniform_(self.global_prompts, -bound, bound)

        if num_text_prompts % 2:
            raise ValueError(
                f'num_text_prompts must be even (prefix + postfix), got '
                f'{num_text_prompts}')
        n_prefix = num_text_prompts // 2
        self.prompt_generator = DGLPromptGenerator(
            mode=prompt_generator,
            embed_dims=self.vision_width,
            text_dims=self.text_width,
            num_layers=a['vision_layers'],
            num_frames=num_frames,
            num_local_prompts=num_local_prompts,
            num_text_prefix=n_prefix,
            num_text_postfix=n_prefix if text_postfix_prompts else 0,
            init_bound=bound)
        if a['text_layers'] != a['vision_layers']:
            raise ValueError(
                'DGL prompts are generated per layer for both towers: '
                'text_layers must equal vision_layers, got '
                f"{a['text_layers']} and {a['vision_layers']}")

        self.intra_prompt = build_intra_frame_prompt(
            intra_prompt,
            image_size=self.image_size,
            patch_size=self.patch_size,
            embed_dims=self.vision_width,
            num_patches=self.num_patches,
            num_layers=a['vision_layers'])
        self.inter_prompt = build_inter_frame_prompt(
            inter_prompt,
            embed_dims=self.vision_width,
            num_patches=self.num_patches,
            num_prompts=num_local_prompts,
            num_heads=a['vision_heads'],
            num_frames=num_frames)

        if adapter is not None:
            adapter = dict(adapter)
            self.adapter_scale = adapter.pop('scale', 0.1)
            self.visual_adapters = nn.ModuleList(
                Adapter(self.vision_width, **adapter)
                for _ in range(a['vision_layers']))
            self.text_adapters = nn.ModuleList(
                Adapter(self.text_width, **adapter)
                for _ in range(a['text_layers']))
        else:
            self.adapter_scale = 0.
            self.visual_adapters = self.text_adapters = None

        if freeze_clip:
            self.clip.requires_grad_(False)

    # ------------------------------------------------------------------
    # weights and freezing
    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load the pretrained CLIP weights (``pretrained``), if any, then
        an ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None,
        allow_mismatch=[...])`` checkpoint of the whole backbone, strictly
        (:func:`~mmstop.utils.checkpoint.load_checkpoint_checked`: every
        missing, unexpected or mis-shaped key not matching
        ``allow_mismatch`` is an error)."""
        pretrained, others = split_pretrained_init_cfg(self.init_cfg)
        saved, self.init_cfg = self.init_cfg, (others or None)
        super().init_weights()
        self.init_cfg = saved
        if self.pretrained is not None:
            state = read_clip_checkpoint(self.pretrained)
            load_clip_state_dict(self.clip, state, source=self.pretrained)
            MMLogger.get_current_instance().info(
                f'loaded CLIP weights from {self.pretrained}')
        if pretrained is not None:
            load_checkpoint_checked(
                self,
                pretrained['checkpoint'],
                allow_mismatch=pretrained.get('allow_mismatch', ()),
                prefix=pretrained.get('prefix'),
                hint="init_cfg=dict(type='Pretrained', allow_mismatch=[...])")

    def trainable_parameter_names(self) -> List[str]:
        """Names of the parameters that require gradients."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> 'STOPCLIP':
        """Set train mode; a frozen CLIP stays in eval mode."""
        super().train(mode)
        if self.freeze_clip:
            self.clip.eval()
        return self

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's ``logit_scale`` (``ln(1/tau)``; frozen at ln 100
        officially)."""
        return self.clip.logit_scale

    # ------------------------------------------------------------------
    # video
    # ------------------------------------------------------------------
    def patch_embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP patch embedding: ``[B, T, 3, H, W]`` ->
        ``[B, T, 1+N, D]``."""
        visual = self.clip.visual
        B, T = frames.shape[:2]
        x = visual.conv1(frames.flatten(0, 1))  # [BT, D, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype) + torch.zeros(
            x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + \
            visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x)
        return x.reshape(B, T, x.shape[1], x.shape[2])

    def _prompt_modules(self) -> List[STOPPromptModule]:
        return [
            m for m in (self.intra_prompt, self.inter_prompt) if m is not None
        ]

    @property
    def batch_dependent(self) -> bool:
        """Whether a video's feature depends on the other videos of its batch
        (official inter prompt, ``normalize='batch'``): evaluation then needs
        a fixed batch size."""
        return any(m.batch_dependent for m in self._prompt_modules())

    def _check_frames(self, frames: torch.Tensor) -> None:
        shape = (self.num_frames, 3, self.image_size, self.image_size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != shape:
            raise ValueError(
                f'STOPCLIP expects frames [B, {self.num_frames}, 3, '
                f'{self.image_size}, {self.image_size}] (num_frames and '
                f'image_size of the model), got {list(frames.shape)}')
        for module in self._prompt_modules():
            module.check_batch(frames.shape[0], frames.shape[1])

    def encode_video(self,
                     frames: torch.Tensor,
                     visual_prompts: Optional[torch.Tensor] = None,
                     return_intermediates: bool = False):
        """Encode videos.

        The prompt modules act through their hooks
        (:mod:`mmstop.models.prompts.base`): the intra prompt's
        ``prompt_pixels`` before the patch embedding and ``prompt_tokens`` at
        the input of the layers it prompts; the inter prompt's
        ``frame_prompts`` once, on the layer-0 frame tokens and the intra
        region mask, filling the slots of :class:`FrameTokenSlots`.

        Args:
            frames (torch.Tensor): Normalised frames ``[B, T, 3, H, W]``. In
                official mode the features of a video depend on the other
                videos of the batch (the inter-frame scores are normalised over
                all its frames), so keep evaluation batches fixed.
            visual_prompts (torch.Tensor, optional): Local prompts from
                :meth:`prompt_generator` (``[layers, n, D]``); computed if
                omitted.
            return_intermediates (bool): Also return a dict of intermediate
                tensors. Defaults to False. They are ``h0`` (patch
                embedding), ``VP`` (local prompts), ``mask`` (the region mask
                given to the inter prompt, ``[B, T, G, G]``, if any),
                ``vis_global_layers`` ``[layers, B, G, D]`` and
                ``vis_cls_layers`` ``[layers, B, T, D]`` (block outputs),
                ``video_feature``, and the prompt modules' own: official
                ``prompted_pixels``, ``mask_pooled``; paper intra
                ``intra_{mask,scores,attn_map,dynamics}_layers``
                (``[prompted layers, B, T, N]``); official inter ``w_raw``,
                ``w``, ``inter_prompt`` ``[B, T, P, D]``, ``inter_attn``;
                paper inter ``w_raw``, ``w``, ``inter_counts`` ``[B, T]``,
                ``inter_padding`` ``[B, T, max_prompts]`` (True = padded
                slot), ``inter_prompt`` ``[B, T, max_prompts, D]``.

        Returns:
            torch.Tensor | tuple: Video features ``[B, embed_dims]`` (and the
            intermediates).
        """
        self._check_frames(frames)
        B, T = frames.shape[:2]
        intra = self.intra_prompt
        out: Dict[str, torch.Tensor] = {}
        region_mask = None
        if intra is not None:
            frames, region_mask, extra = intra.prompt_pixels(frames)
            out.update(extra)
        h0 = self.patch_embed(frames)
        if visual_prompts is None:
            visual_prompts = self.prompt_generator()[1]
        out.update(h0=h0, VP=visual_prompts)

        g = self.global_prompts.to(h0.dtype).expand(B, -1, -1)
        # frame tokens [B, T, 1+N, D]; f: the previous layer's, with slots
        tokens, slots, f = h0, None, None
        layer_outputs: List[Dict[str, torch.Tensor]] = []
        globals_, cls_ = [], []
        for index, block in enumerate(self.clip.visual.transformer.resblocks):
            if slots is not None:
                tokens = slots.remove(f)
            if intra is not None and intra.prompts_layer(index):
                tokens, mask, extra = intra.prompt_tokens(
                    tokens, index, block.ln_1, block.attn)
                layer_outputs.append(extra)
                if index == 0 and mask is not None:
                    region_mask = mask
            if slots is None:
                slots = self._frame_slots(tokens, region_mask, visual_prompts,
                                          out)
            f = slots.insert(index, tokens)
            adapter = None if self.visual_adapters is None else \
                self.visual_adapters[index]
            g, f = global_local_block(block, g, f, slots.key_padding, adapter,
                                      self.adapter_scale)
            if return_intermediates:
                globals_.append(g)
                cls_.append(f[:, :, 0])
        feature = self._pool(g, f)
        if not return_intermediates:
            return feature
        for key in (layer_outputs[0] if layer_outputs else ()):
            out[f'{key}_layers'] = torch.stack([o[key] for o in layer_outputs])
        out.update(
            vis_global_layers=torch.stack(globals_),
            vis_cls_layers=torch.stack(cls_),
            video_feature=feature)
        return feature, out

    def _frame_slots(self, tokens: torch.Tensor,
                     region_mask: Optional[torch.Tensor],
                     visual_prompts: torch.Tensor,
                     out: Dict[str, torch.Tensor]) -> FrameTokenSlots:
        """The prompt slots of every layer, from the layer-0 frame tokens
        ``[B, T, 1+N, D]`` (after the intra prompt) and the intra region mask;
        the inter prompt's intermediates and the region mask (as ``mask``,
        ``[B, T, G, G]``) are added to ``out``."""
        B, T = tokens.shape[:2]
        if region_mask is not None:
            out['mask'] = region_mask.reshape(B, T, self.grid_size,
                                              self.grid_size)
        inter = None
        if self.inter_prompt is not None:
            inter = self.inter_prompt.frame_prompts(tokens, region_mask)
            out.update(inter.intermediates)
        return FrameTokenSlots(visual_prompts, B, T, self.num_local_prompts,
                               self.num_global_prompts, self.num_patches,
                               inter)

    def _pool(self, g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        if self.pool == 'global0':
            tokens = g[:, :1]
        elif self.pool == 'mean_global':
            tokens = g
        else:
            tokens = f[:, :, 0]
        return (visual.ln_post(tokens) @ visual.proj).mean(dim=1)

    # ------------------------------------------------------------------
    # text
    # ------------------------------------------------------------------
    def encode_text(self,
                    token_ids: torch.Tensor,
                    text_prompts: Optional[torch.Tensor] = None,
                    return_intermediates: bool = False):
        """Encode token ids ``[B, L]`` (SOT ... EOT, zero padded) to
        ``[B, D]``.

        The EOT token must be the largest id of each row (as with CLIP's
        tokenizer); its position gives the text feature.

        Args:
            token_ids (torch.Tensor): ``[B, L]`` with ``L`` at most the
                context length.
            text_prompts (torch.Tensor, optional): ``[layers, n, text_width]``
                from :meth:`prompt_generator`; computed if omitted.
            return_intermediates (bool): Also return the intermediate tensors
                ``TP`` (the text prompts), ``txt_eot_layers`` (the EOT token
                after every block, ``[layers, B, text_width]``) and
                ``text_feature``. Defaults to False.

        Returns:
            torch.Tensor | tuple: Text features ``[B, embed_dims]`` (and the
            intermediates).
        """
        clip = self.clip
        if token_ids.dim() != 2:
            raise ValueError(
                f'token ids must be [B, L], got {list(token_ids.shape)}')
        B, L = token_ids.shape
        if L > clip.positional_embedding.shape[0]:
            raise ValueError(
                f'token ids have length {L}, longer than the context length '
                f'{clip.positional_embedding.shape[0]}')
        if text_prompts is None:
            text_prompts = self.prompt_generator()[0]
        n_pre = self.prompt_generator.num_text_prefix
        dtype = clip.token_embedding.weight.dtype
        x = clip.token_embedding(token_ids).to(dtype)
        x = x + clip.positional_embedding[:L].to(dtype)
        prompts = text_prompts.to(dtype)

        def with_prompts(seq_first, seq_text, layer):
            p = prompts[layer][None].expand(B, -1, -1)
            return torch.cat([seq_first, p[:, :n_pre], seq_text, p[:, n_pre:]],
                             dim=1)

        seq = with_prompts(x[:, :1], x[:, 1:], 0)
        n = seq.shape[1]
        attn_mask = torch.full((n, n),
                               float('-inf'),
                               dtype=seq.dtype,
                               device=seq.device).triu_(1)
        eot = token_ids.argmax(dim=-1) + n_pre
        rows = torch.arange(B, device=token_ids.device)
        eot_layers = []
        for index, block in enumerate(clip.transformer.resblocks):
            if index > 0:
                seq = with_prompts(seq[:, :1], seq[:, 1 + n_pre:n_pre + L],
                                   index)
            adapter = None if self.text_adapters is None else \
                self.text_adapters[index]
            seq = text_block(block, seq, attn_mask, adapter,
                             self.adapter_scale)
            if return_intermediates:
                eot_layers.append(seq[rows, eot])
        feature = clip.ln_final(seq[rows, eot]) @ clip.text_projection
        if not return_intermediates:
            return feature
        return feature, dict(
            TP=text_prompts,
            txt_eot_layers=torch.stack(eot_layers),
            text_feature=feature)

    # ------------------------------------------------------------------
    def forward(self,
                inputs: torch.Tensor,
                token_ids: Optional[torch.Tensor] = None,
                return_intermediates: bool = False):
        """Encode clips, and texts with the same generated prompts.

        Without ``token_ids`` this is MMAction2's backbone entry: clips
        ``[N, C, T, H, W]`` (the ``NCTHW`` layout of MMAction2's
        ``FormatShape('NCTHW')`` and ``Recognizer3D``) -> features ``[N, D]``.

        Args:
            inputs (torch.Tensor): Clips ``[N, C, T, H, W]``.
            token_ids (torch.Tensor, optional): Texts ``[M, L]`` to encode too
                (:meth:`encode_text`). Defaults to None.
            return_intermediates (bool): Also return the intermediates of
                :meth:`encode_video` and :meth:`encode_text` and, with
                ``token_ids``, ``sim`` (the text-video similarity logits
                ``[M, N]``: ``exp(logit_scale)`` times the cosines) and
                ``logit_scale_exp``. The names are those of the golden data of
                the official code (``docs/parity.md#stop-golden-data``), in
                the layouts documented above. Defaults to False.

        Returns:
            torch.Tensor | tuple: Video features ``[N, embed_dims]``; with
            ``token_ids``, ``(video, text)``; with ``return_intermediates``,
            the dict of intermediates as the last element.
        """
        if inputs.dim() != 5:
            raise ValueError(
                f'STOPCLIP.forward expects clips [N, C, T, H, W], got '
                f'{list(inputs.shape)}')
        frames = inputs.transpose(1, 2)
        if token_ids is None:
            return self.encode_video(
                frames, return_intermediates=return_intermediates)
        text_prompts, visual_prompts = self.prompt_generator()
        if not return_intermediates:
            return (self.encode_video(frames, visual_prompts),
                    self.encode_text(token_ids, text_prompts))
        video, out = self.encode_video(
            frames, visual_prompts, return_intermediates=True)
        text, text_out = self.encode_text(
            token_ids, text_prompts, return_intermediates=True)
        out.update(text_out)
        scale = self.logit_scale.exp()
        v = video / video.norm(dim=-1, keepdim=True)
        t = text / text.norm(dim=-1, keepdim=True)
        out.update(sim=scale * t @ v.t(), logit_scale_exp=scale)
        return video, text, out
