# Copyright (c) mmstop contributors. All rights reserved.
"""STOP: a frozen CLIP adapted to video with spatial and temporal prompts.

:class:`STOPCLIP` wraps open_clip's ViT and text transformer (OpenAI parameter
names, so OpenAI checkpoints load unchanged) and adds the prompt modules of
STOP (CVPR 2025) and of DGL, on which the official STOP code is built. With
the default options it computes exactly what the official code computes
(``mode='official'`` everywhere; proved against the golden data of
``shared/parity/stop`` in ``tests/models/test_stop_parity.py``).

Video path (``encode_video``; spec ``stop.md`` sections 2.1-2.8), for frames
``[B, T, 3, H, W]``:

1. intra-frame prompt on the pixels (:mod:`..prompts.stop_intra`);
2. frozen patch embedding -> ``h0`` ``[B, T, 1+N, D]`` (CLS first);
3. inter-frame prompts from ``h0`` (:mod:`..prompts.stop_inter`), added to
   the DGL local prompts of every layer;
4. token layout: ``num_global_prompts`` global tokens per video, and per
   frame ``[CLS, local prompts, N patches]``; before every layer ``l >= 1``
   the local-prompt slots are *replaced* by that layer's prompts;
5. each block: frame tokens attend to their video's global tokens and their
   own frame; global tokens attend to the whole video; then
   ``x + MLP(LN(x)) + adapter_scale * Adapter(x)``;
6. ``pool``: the first global token (official), the mean of the global
   tokens, or the mean of the frame CLS tokens, after ``ln_post`` and ``proj``.

The paper modes (no official code, no reference numbers) plug into the same
loop through two hook points:

* ``intra_prompt=dict(mode='paper')`` (:class:`TokenIntraFramePrompt`)
  replaces step 1: before the attention of each prompted layer the
  discriminative patch tokens of every frame get a token-space prompt
  (equations 2-7). Its layer-0 output and region mask feed step 3.
* ``inter_prompt=dict(mode='paper')`` (:class:`DynamicInterFramePrompt`)
  replaces step 3: a dynamic number of tokens per frame (equations 8-12),
  computed once from the layer-0 (intra-prompted) tokens, sits in
  ``max_prompts`` extra slots of each frame, ``[CLS, local prompts, inter
  slots, patches]``, re-inserted before every layer like the local prompts.
  Unused slots are masked as attention keys (for the frame's and the global
  tokens' attention), so they never influence a real token.

Text path (``encode_text``, section 2.9): ``[SOT, prefix prompts, tokens,
postfix prompts]`` with positional embeddings added before the prompts are
inserted, prompts replaced before every layer ``l >= 1``, causal mask,
feature at the EOT token.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule

from mmstop.registry import MODELS
from mmstop.utils.checkpoint import (load_checkpoint_checked,
                                     split_pretrained_init_cfg)
from ..clip import (build_open_clip, load_clip_state_dict,
                    read_clip_checkpoint)
from ..clip.builder import resolve_clip_arch
from ..prompts.dgl import Adapter, DGLPromptGenerator
from ..prompts.stop_inter import (DynamicInterFramePrompt,
                                  build_inter_frame_prompt)
from ..prompts.stop_intra import (PixelIntraFramePrompt, TokenIntraFramePrompt,
                                  build_intra_frame_prompt)

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
            :class:`PixelIntraFramePrompt` (official) or
            :class:`TokenIntraFramePrompt` (paper), sizes filled in by the
            backbone. Defaults to ``dict(mode='official')``.
        inter_prompt (dict, optional): ``dict(mode='official'|'paper',
            **options)`` for the inter-frame temporal prompt, ``None`` to
            disable; options of :class:`AttentiveInterFramePrompt` or
            :class:`DynamicInterFramePrompt`. Either mode combines with any
            intra mode. Defaults to ``dict(mode='official')``.
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
        bound = math.sqrt(6. / float(3 * self.patch_size**2 + self.vision_width))
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
            intra_prompt, image_size=self.image_size,
            patch_size=self.patch_size, embed_dims=self.vision_width,
            num_patches=self.num_patches, num_layers=a['vision_layers'])
        self.inter_prompt = build_inter_frame_prompt(
            inter_prompt, embed_dims=self.vision_width,
            num_patches=self.num_patches, num_prompts=num_local_prompts,
            num_heads=a['vision_heads'], num_frames=num_frames)

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
        """CLIP's ``logit_scale`` (``ln(1/tau)``; frozen at ln 100 officially)."""
        return self.clip.logit_scale

    # ------------------------------------------------------------------
    # blocks
    # ------------------------------------------------------------------
    def _mlp_and_adapter(self, block: nn.Module, adapter: Optional[nn.Module],
                         x: torch.Tensor) -> torch.Tensor:
        # the adapter reads the same stream as the MLP: x + MLP(LN(x)) + s*A(x)
        out = x + block.ls_2(block.mlp(block.ln_2(x)))
        if adapter is not None:
            out = out + self.adapter_scale * adapter(x)
        return out

    def _visual_block(
            self, index: int, g: torch.Tensor, f: torch.Tensor,
            key_padding: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One frozen ViT block with DGL's global/local attention.

        ``g``: global tokens ``[B, G, D]``; ``f``: frame tokens
        ``[B, T, S, D]``. Frame tokens attend to ``[their video's global
        tokens; their frame]``; global tokens attend to ``[global tokens; all
        frame tokens of the video]``. ``key_padding``: optional boolean key
        masks (True = ignored) of the frame and the global attention, from
        :meth:`_key_padding_masks`.
        """
        block = self.clip.visual.transformer.resblocks[index]
        B, T, S, D = f.shape
        G = g.shape[1]
        g_ln = block.ln_1(g)
        f_ln = block.ln_1(f)
        q_f = f_ln.reshape(B * T, S, D)
        kv_f = torch.cat(
            [g_ln[:, None].expand(B, T, G, D).reshape(B * T, G, D), q_f], dim=1)
        mask_f, mask_g = (None, None) if key_padding is None else key_padding
        out_f = block.attn(q_f, kv_f, kv_f, need_weights=False,
                           key_padding_mask=mask_f)[0]
        kv_g = torch.cat([g_ln, f_ln.reshape(B, T * S, D)], dim=1)
        out_g = block.attn(g_ln, kv_g, kv_g, need_weights=False,
                           key_padding_mask=mask_g)[0]
        g = g + block.ls_1(out_g)
        f = f + block.ls_1(out_f.reshape(B, T, S, D))
        adapter = None if self.visual_adapters is None else self.visual_adapters[index]
        return (self._mlp_and_adapter(block, adapter, g),
                self._mlp_and_adapter(block, adapter, f))

    def _text_block(self, index: int, x: torch.Tensor,
                    attn_mask: torch.Tensor) -> torch.Tensor:
        block = self.clip.transformer.resblocks[index]
        x_ln = block.ln_1(x)
        x = x + block.ls_1(
            block.attn(x_ln, x_ln, x_ln, need_weights=False,
                       attn_mask=attn_mask)[0])
        adapter = None if self.text_adapters is None else self.text_adapters[index]
        return self._mlp_and_adapter(block, adapter, x)

    # ------------------------------------------------------------------
    # video
    # ------------------------------------------------------------------
    def patch_embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP patch embedding: ``[B, T, 3, H, W]`` -> ``[B, T, 1+N, D]``."""
        visual = self.clip.visual
        B, T = frames.shape[:2]
        x = visual.conv1(frames.flatten(0, 1))  # [BT, D, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype) + torch.zeros(
            x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x)
        return x.reshape(B, T, x.shape[1], x.shape[2])

    def _check_frames(self, frames: torch.Tensor) -> None:
        shape = (self.num_frames, 3, self.image_size, self.image_size)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != shape:
            raise ValueError(
                f'STOPCLIP expects frames [B, {self.num_frames}, 3, '
                f'{self.image_size}, {self.image_size}] (num_frames and '
                f'image_size of the model), got {list(frames.shape)}')
        if (frames.shape[0] * frames.shape[1] == 1 and getattr(
                self.inter_prompt, 'normalize', None) == 'batch'):
            raise ValueError(
                'official inter-frame prompts (inter_prompt.normalize='
                "'batch') min-max normalise the frame scores over all "
                'batch_size x num_frames frames of a batch, and this batch '
                'holds 1 video of 1 frame: 0/0 gives NaN features. Set '
                "inter_prompt=dict(normalize='video') (per-video "
                'normalisation, defined for any batch), or use batches with '
                'at least 2 frames in total (batch_size * num_frames >= 2)')

    def encode_video(self, frames: torch.Tensor,
                     visual_prompts: Optional[torch.Tensor] = None,
                     return_intermediates: bool = False):
        """Encode videos.

        Args:
            frames (torch.Tensor): Normalised frames ``[B, T, 3, H, W]``. In
                official mode the features of a video depend on the other
                videos of the batch (the inter-frame scores are normalised over
                all its frames), so keep evaluation batches fixed.
            visual_prompts (torch.Tensor, optional): Local prompts from
                :meth:`prompt_generator` (``[layers, n, D]``); computed if
                omitted.
            return_intermediates (bool): Also return a dict of intermediate
                tensors. Defaults to False. Besides the official ones
                (``h0``, ``VP``, ``mask``, ``w``, ``inter_prompt``, per-layer
                global/CLS tokens, ...), a paper-mode intra prompt adds
                ``intra_{mask,scores,attn_map,dynamics}_layers``
                (``[prompted layers, B, T, N]``; ``mask`` is then the layer-0
                region mask as ``[B, T, G, G]``), and a paper-mode inter
                prompt ``inter_counts`` ``[B, T]``, ``inter_padding``
                ``[B, T, max_prompts]`` (True = padded slot) and
                ``inter_prompt`` ``[B, T, max_prompts, D]``.

        Returns:
            torch.Tensor | tuple: Video features ``[B, embed_dims]`` (and the
            intermediates).
        """
        self._check_frames(frames)
        B, T = frames.shape[:2]
        inter: Dict[str, torch.Tensor] = {}
        region_mask = None
        if isinstance(self.intra_prompt, PixelIntraFramePrompt):
            out = self.intra_prompt(frames)
            frames, region_mask = out['frames'], out['mask']
            inter.update(prompted_pixels=frames, mask_pooled=out['scores'],
                         mask=region_mask)
        h0 = self.patch_embed(frames)
        inter['h0'] = h0
        if visual_prompts is None:
            visual_prompts = self.prompt_generator()[1]
        inter['VP'] = visual_prompts
        intra_trace: List[Dict[str, torch.Tensor]] = []

        g = self.global_prompts.to(h0.dtype).expand(B, -1, -1)
        # frame tokens [B, T, 1 + K + N, D]: CLS, K prompt slots, patches
        f, K = h0, 0
        globals_, cls_ = [], []
        for index in range(len(self.clip.visual.transformer.resblocks)):
            cls, patches = f[:, :, :1], f[:, :, 1 + K:]
            if self._token_intra_at(index):
                patches = self._token_intra(index, cls, patches, intra_trace)
            if index == 0:
                # prompt slots of every layer, from the layer-0 tokens
                if intra_trace:
                    region_mask = intra_trace[0]['mask']
                local, extra, key_padding = self._prompt_slots(
                    torch.cat([cls, patches], dim=2), region_mask,
                    visual_prompts, inter)
                extra = [] if extra is None else [extra]
                K = local.shape[3] + sum(t.shape[2] for t in extra)
            f = torch.cat([cls, local[index], *extra, patches], dim=2)
            g, f = self._visual_block(index, g, f, key_padding)
            if return_intermediates:
                globals_.append(g)
                cls_.append(f[:, :, 0])
        feature = self._pool(g, f)
        if not return_intermediates:
            return feature
        if intra_trace:
            for key in ('mask', 'scores', 'attn_map', 'dynamics'):
                inter[f'intra_{key}_layers'] = torch.stack(
                    [t[key] for t in intra_trace])
            if self.intra_prompt.applies_to(0):
                inter['mask'] = intra_trace[0]['mask'].reshape(
                    B, T, self.grid_size, self.grid_size)
        inter.update(vis_global_layers=torch.stack(globals_),
                     vis_cls_layers=torch.stack(cls_), video_feature=feature)
        return feature, inter

    # hook points of the prompt modules ---------------------------------
    def _token_intra_at(self, index: int) -> bool:
        """Whether the paper-mode intra prompt acts before layer ``index``."""
        return isinstance(self.intra_prompt, TokenIntraFramePrompt) and \
            self.intra_prompt.applies_to(index)

    def _token_intra(self, index: int, cls: torch.Tensor,
                     patches: torch.Tensor,
                     trace: List[Dict[str, torch.Tensor]]) -> torch.Tensor:
        """Paper-mode intra prompt at the input of layer ``index``.

        Uses the layer's frozen ``ln_1`` and attention for the CLS attention
        map; returns the prompted patches ``[B, T, N, D]`` and appends the
        module's outputs to ``trace``.
        """
        block = self.clip.visual.transformer.resblocks[index]
        out = self.intra_prompt(torch.cat([cls, patches], dim=2), index,
                                norm=block.ln_1, attn=block.attn)
        trace.append(out)
        return out['tokens'][:, :, 1:]

    def _prompt_slots(self, tokens: torch.Tensor,
                      region_mask: Optional[torch.Tensor],
                      visual_prompts: torch.Tensor,
                      inter: Dict[str, torch.Tensor]
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor],
                                 Optional[Tuple[torch.Tensor, torch.Tensor]]]:
        """Prompt-slot tokens of every layer and the attention key masks.

        Args:
            tokens (torch.Tensor): Layer-0 frame tokens ``[B, T, 1+N, D]``
                (after a paper-mode intra prompt, if any).
            region_mask (torch.Tensor, optional): Intra region mask.
            visual_prompts (torch.Tensor): DGL local prompts
                ``[layers, n, D]``.
            inter (dict): Intermediates, updated in place.

        Returns:
            tuple: the local prompts of every layer ``[layers, B, T, P, D]``
            (official inter prompts already added), the paper-mode inter
            slots ``[B, T, max_prompts, D]`` that follow them in every layer
            (or ``None``), and the key masks for :meth:`_visual_block`
            (``None`` unless some slots are padding).
        """
        B, T, _, D = tokens.shape
        n_layers, P = visual_prompts.shape[0], self.num_local_prompts
        # local prompts per layer: [layers, 1|B, T, P, D]
        local = visual_prompts.reshape(n_layers, 1, -1, P, D)
        if local.shape[2] == 1:
            local = local.expand(n_layers, 1, T, P, D)
        elif local.shape[2] != T:
            raise ValueError(
                f'visual prompts cover {local.shape[2]} frames, video has {T}')
        if self.inter_prompt is None:
            return local.expand(n_layers, B, T, P, D), None, None
        out = self.inter_prompt(tokens, region_mask)
        inter.update(w_raw=out['w_raw'], w=out['w'],
                     inter_prompt=out['prompts'])
        if not isinstance(self.inter_prompt, DynamicInterFramePrompt):
            inter['inter_attn'] = out['attn']
            local = local + out['prompts'][None]
            return local.expand(n_layers, B, T, P, D), None, None
        inter.update(inter_counts=out['counts'],
                     inter_padding=out['padding_mask'])
        pad = out['padding_mask']
        keep = pad.new_zeros(B, T, 1 + P)
        frame_pad = torch.cat(
            [keep, pad, pad.new_zeros(B, T, tokens.shape[2] - 1)], dim=2)
        return (local.expand(n_layers, B, T, P, D), out['prompts'],
                self._key_padding_masks(frame_pad))

    def _key_padding_masks(self, frame_pad: torch.Tensor
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Key masks of the frame and global attention from ``[B, T, S]``."""
        B, T, S = frame_pad.shape
        G = self.num_global_prompts
        glob = frame_pad.new_zeros(B, G)
        mask_f = torch.cat([glob[:, None].expand(B, T, G), frame_pad],
                           dim=2).reshape(B * T, G + S)
        mask_g = torch.cat([glob, frame_pad.reshape(B, T * S)], dim=1)
        return mask_f, mask_g

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
    def encode_text(self, token_ids: torch.Tensor,
                    text_prompts: Optional[torch.Tensor] = None,
                    return_intermediates: bool = False):
        """Encode token ids ``[B, L]`` (SOT ... EOT, zero padded) to ``[B, D]``.

        The EOT token must be the largest id of each row (as with CLIP's
        tokenizer); its position gives the text feature.

        Args:
            token_ids (torch.Tensor): ``[B, L]`` with ``L`` at most the
                context length.
            text_prompts (torch.Tensor, optional): ``[layers, n, text_width]``
                from :meth:`prompt_generator`; computed if omitted.
            return_intermediates (bool): Also return intermediate tensors.

        Returns:
            torch.Tensor | tuple: Text features ``[B, embed_dims]``.
        """
        clip = self.clip
        if token_ids.dim() != 2:
            raise ValueError(f'token ids must be [B, L], got {list(token_ids.shape)}')
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
            return torch.cat(
                [seq_first, p[:, :n_pre], seq_text, p[:, n_pre:]], dim=1)

        seq = with_prompts(x[:, :1], x[:, 1:], 0)
        n = seq.shape[1]
        attn_mask = torch.full((n, n), float('-inf'), dtype=seq.dtype,
                               device=seq.device).triu_(1)
        eot = token_ids.argmax(dim=-1) + n_pre
        rows = torch.arange(B, device=token_ids.device)
        eot_layers = []
        for index in range(len(clip.transformer.resblocks)):
            if index > 0:
                seq = with_prompts(seq[:, :1], seq[:, 1 + n_pre:n_pre + L], index)
            seq = self._text_block(index, seq, attn_mask)
            if return_intermediates:
                eot_layers.append(seq[rows, eot])
        feature = clip.ln_final(seq[rows, eot]) @ clip.text_projection
        if not return_intermediates:
            return feature
        return feature, dict(TP=text_prompts, txt_eot_layers=torch.stack(eot_layers),
                             text_feature=feature)

    # ------------------------------------------------------------------
    def forward_with_intermediates(self, frames: torch.Tensor,
                                   token_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Run both towers on one batch and return every intermediate.

        Used by the parity tests; the names follow
        ``shared/parity/stop/README.md`` section 5.

        Args:
            frames (torch.Tensor): ``[B, T, 3, H, W]`` or ``[B*T, 3, H, W]``.
            token_ids (torch.Tensor): ``[B, L]``.
        """
        if frames.dim() == 4:
            frames = frames.reshape(-1, self.num_frames, *frames.shape[1:])
        text_prompts, visual_prompts = self.prompt_generator()
        video, out = self.encode_video(frames, visual_prompts,
                                       return_intermediates=True)
        text, text_out = self.encode_text(token_ids, text_prompts,
                                          return_intermediates=True)
        out.update(text_out)
        B, T = frames.shape[:2]
        out['h0'] = out['h0'].reshape(B * T, *out['h0'].shape[2:])
        if 'prompted_pixels' in out:
            out['prompted_pixels'] = out['prompted_pixels'].flatten(0, 1)
        if 'inter_prompt' in out:
            out['inter_prompt'] = out['inter_prompt'].flatten(1, 2)
        scale = self.logit_scale.exp()
        v = video / video.norm(dim=-1, keepdim=True)
        t = text / text.norm(dim=-1, keepdim=True)
        out['sim'] = scale * t @ v.t()
        out['logit_scale_exp'] = scale
        return out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """MMAction2 backbone entry: clips ``[N, C, T, H, W]`` -> ``[N, D]``.

        The ``NCTHW`` layout is what MMAction2's ``FormatShape('NCTHW')`` and
        ``Recognizer3D`` produce; :meth:`encode_video` takes ``[B, T, C, H, W]``.
        """
        if inputs.dim() != 5:
            raise ValueError(
                f'STOPCLIP.forward expects clips [N, C, T, H, W], got '
                f'{list(inputs.shape)}')
        return self.encode_video(inputs.transpose(1, 2))
