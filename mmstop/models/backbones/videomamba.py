# Copyright (c) mmstop contributors. All rights reserved.
"""VideoMamba backbone (Li et al., ECCV 2024) with optional SSP prompting.

Written from ``shared/spec/ssp.md`` §1-§3: what the official VideoMamba
``video_sm`` model, as vendored by the SSP release, computes. Parameter names
are the official ones (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``temporal_pos_embedding``, ``layers.{i}.mixer.*``, ``layers.{i}.norm``,
``norm_f``); the SSP modules live under ``ssp.`` (the official
``inner_prompt.*`` / ``prompt_attentions.*`` / ``dynamic_scales.*`` names are
accepted when loading). The classifier is not part of the backbone: the
backbone returns the normed CLS feature [B, C] for a linear head such as
MMAction2's ``TimeSformerHead``.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmstop.models.prompts.ssp import StateSpacePrompting
from mmstop.registry import MODELS
from mmstop.utils.checkpoint import split_pretrained_init_cfg
from .mamba_mixer import BiMambaMixer, MambaBlock, RMSNorm
from .videomamba_checkpoint import (adapt_videomamba_state_dict,
                                    load_videomamba_checkpoint)


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f'expected an int or (h, w), got {v}')
    return v


class PatchEmbed3D(nn.Module):
    """Conv3d tubelet embedding, kernel = stride = (tubelet, ph, pw).

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Output channels.
        patch_size (tuple[int, int]): Spatial patch size.
        tubelet_size (int): Temporal kernel / stride.
    """

    def __init__(self, in_channels: int, embed_dims: int,
                 patch_size: Tuple[int, int], tubelet_size: int) -> None:
        super().__init__()
        kernel = (tubelet_size, ) + tuple(patch_size)
        self.proj = nn.Conv3d(in_channels, embed_dims, kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


@MODELS.register_module()
class VideoMamba(BaseModule):
    """VideoMamba video backbone, optionally with SSP prompts.

    Tokens: a Conv3d tubelet embedding gives T' = num_frames / tubelet_size
    frames of N = h * w patch tokens (frame-major, row-major in a frame);
    each gets ``pos_embed[1:]`` and its frame's ``temporal_pos_embedding``.
    One CLS token (``cls_token + pos_embed[0]``, no temporal embedding) is
    put at position 0. With SSP, P zero prompt slots (no position embedding)
    follow every frame's patches. The sequence runs through ``depth``
    Add -> RMSNorm -> bidirectional-Mamba blocks with an fp32 residual, then
    ``norm_f(residual + drop_path(hidden))``; the output is the CLS feature.

    Args:
        arch (str | dict): ``'tiny'`` (192 / 24), ``'small'`` (384 / 24) or
            ``'middle'`` (576 / 32), or a dict with ``embed_dims`` and
            ``depth``. Defaults to ``'middle'``.
        img_size (int | tuple[int, int]): Input frame size. Defaults to 224.
        patch_size (int | tuple[int, int]): Spatial patch size.
            Defaults to 16.
        num_frames (int): Input frames T. Defaults to 8.
        tubelet_size (int): Frames per temporal token. Defaults to 1.
        in_channels (int): Input channels. Defaults to 3.
        d_state (int): SSM state size. Defaults to 16.
        d_conv (int): Causal conv width. Defaults to 4.
        expand (int): Mixer expansion (d_inner = expand * C). Defaults to 2.
        dt_rank (int | str): Step-size rank, ``'auto'`` = ceil(C / 16).
            Defaults to ``'auto'``.
        norm_eps (float): RMSNorm epsilon. Defaults to 1e-5.
        drop_path_rate (float): Stochastic depth. With
            ``dpr = linspace(0, rate, depth)`` block ``i`` drops its incoming
            hidden state with ``([0] + dpr)[i]`` and the final add before
            ``norm_f`` uses ``rate`` (official schedule). Active in training
            even when the backbone is frozen (official). Defaults to 0.
        residual_in_fp32 (bool): Keep the residual stream in fp32.
            Defaults to True.
        ssp (dict, optional): Enable SSP with these
            :class:`~mmstop.models.prompts.StateSpacePrompting` options
            (``num_prompts``, ``hidden_dims``, ``attn_dims``, ``num_heads``,
            ``kernel_size``, ``entropy_max``); ``None`` gives plain
            VideoMamba. Defaults to None.
        freeze_backbone (bool, optional): Freeze everything except the SSP
            modules and ``norm_f`` (the head is outside). ``None`` means
            "freeze iff SSP is on" (official SSP rule). Defaults to None.
        with_cp (bool): Gradient checkpointing of every block in training.
            Defaults to False.
        scan_impl (str): Selective-scan implementation passed to
            :func:`mmstop.models.ops.selective_scan` (``'auto'``: mamba_ssm
            or Triton on CUDA, ``'fast'`` elsewhere; or ``'reference'``,
            ``'fast'``, ``'triton'``, ``'mamba_ssm'``). Defaults to
            ``'auto'``.
        pretrained (str, optional): Checkpoint to load (strictly, with the
            known differences of published checkpoints) in
            :meth:`init_weights`; same as
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``, which also
            takes ``allow_mismatch=[key patterns]``. Defaults to None.
        init_cfg (dict, optional): MMEngine init config. Defaults to None.
    """

    arch_zoo = {
        'tiny': dict(embed_dims=192, depth=24),
        'small': dict(embed_dims=384, depth=24),
        'middle': dict(embed_dims=576, depth=32),
    }
    _arch_alias = {'t': 'tiny', 's': 'small', 'm': 'middle'}

    def __init__(self,
                 arch: Union[str, Dict] = 'middle',
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: Union[int, Sequence[int]] = 16,
                 num_frames: int = 8,
                 tubelet_size: int = 1,
                 in_channels: int = 3,
                 d_state: int = 16,
                 d_conv: int = 4,
                 expand: int = 2,
                 dt_rank: Union[int, str] = 'auto',
                 norm_eps: float = 1e-5,
                 drop_path_rate: float = 0.,
                 residual_in_fp32: bool = True,
                 ssp: Optional[Dict] = None,
                 freeze_backbone: Optional[bool] = None,
                 with_cp: bool = False,
                 scan_impl: str = 'auto',
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Dict] = None) -> None:
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, not '
                                 'both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = C = self.arch_settings['embed_dims']
        self.depth = self.arch_settings['depth']
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        if any(i % p for i, p in zip(self.img_size, self.patch_size)):
            raise ValueError(f'img_size {self.img_size} must be divisible by '
                             f'patch_size {self.patch_size}')
        if num_frames % tubelet_size:
            raise ValueError(f'num_frames ({num_frames}) must be divisible by '
                             f'tubelet_size ({tubelet_size})')
        self.grid_size = (self.img_size[0] // self.patch_size[0],
                          self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.num_temporal_tokens = num_frames // tubelet_size
        self.drop_path_rate = drop_path_rate
        self.with_cp = with_cp
        self.scan_impl = scan_impl

        self.patch_embed = PatchEmbed3D(in_channels, C, self.patch_size,
                                        tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, C))
        self.temporal_pos_embedding = nn.Parameter(
            torch.zeros(1, self.num_temporal_tokens, C))

        dpr = torch.linspace(
            0, drop_path_rate, self.depth, device='cpu').tolist()
        inter_dpr = [0.0] + dpr
        self.layers = nn.ModuleList([
            MambaBlock(
                C,
                drop_path=inter_dpr[i],
                norm_eps=norm_eps,
                residual_in_fp32=residual_in_fp32,
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
                dt_rank=dt_rank,
                scan_impl=scan_impl) for i in range(self.depth)
        ])
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())
        self.norm_f = RMSNorm(C, eps=norm_eps)
        self._init_random_weights()

        # The SSP modules are created after the backbone init (official
        # order), so they keep their own (mostly zero) init.
        if ssp is not None:
            ssp_cfg = dict(ssp)
            ssp_cfg.setdefault('type', 'StateSpacePrompting')
            ssp_cfg.update(
                embed_dims=C, num_layers=self.depth, grid_size=self.grid_size)
            self.ssp = MODELS.build(ssp_cfg)
            if not isinstance(self.ssp, StateSpacePrompting):
                raise TypeError('ssp must build a StateSpacePrompting, got '
                                f'{type(self.ssp).__name__}')
            self.num_prompts = self.ssp.num_prompts
        else:
            self.ssp = None
            self.num_prompts = 0
        self.freeze_backbone = (ssp is not None if freeze_backbone is None
                                else bool(freeze_backbone))
        if self.freeze_backbone:
            self._freeze()
        self._register_load_state_dict_pre_hook(
            adapt_videomamba_state_dict, with_module=True)

    # ------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------
    def _parse_arch(self, arch) -> Dict:
        if isinstance(arch, str):
            name = self._arch_alias.get(arch.lower(), arch.lower())
            if name not in self.arch_zoo:
                raise KeyError(f'VideoMamba arch {arch!r} is not one of '
                               f'{sorted(self.arch_zoo)}')
            return dict(self.arch_zoo[name])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {type(arch)}')
        keys = {'embed_dims', 'depth'}
        if set(arch) != keys:
            raise KeyError(f'a custom VideoMamba arch needs exactly the keys '
                           f'{sorted(keys)}, got {sorted(arch)}')
        return dict(arch)

    @torch.no_grad()
    def _init_random_weights(self) -> None:
        """Random init of the official VideoMamba (spec §1.7).

        Every Linear: trunc-normal(0.02) weight and zero bias (including
        ``dt_proj``, whose Mamba init is overwritten); ``pos_embed``
        trunc-normal(0.02); ``out_proj.weight`` kaiming-uniform(a=sqrt(5)) /
        sqrt(depth); ``cls_token`` / ``temporal_pos_embedding`` zero,
        ``A_log = log(1..d_state)``, ``D = 1``, norms 1, convs PyTorch
        default.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, BiMambaMixer):
                nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5))
                m.out_proj.weight.div_(math.sqrt(self.depth))

    def _freeze(self) -> None:
        """Only ``ssp.*`` and ``norm_f.*`` keep ``requires_grad``."""
        for name, param in self.named_parameters():
            param.requires_grad = name.startswith(('ssp.', 'norm_f.'))

    # ------------------------------------------------------------------
    # weights
    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``pretrained`` / ``init_cfg`` Pretrained checkpoints with
        :func:`load_videomamba_checkpoint` (published VideoMamba formats,
        strict: ``init_cfg=dict(type='Pretrained', checkpoint=...,
        allow_mismatch=[...])`` lists the keys that may differ); other init
        configs are handled by MMEngine."""
        pretrained, others = split_pretrained_init_cfg(self.init_cfg)
        if pretrained is None:
            super().init_weights()
            return
        if others:
            saved, self.init_cfg = self.init_cfg, others
            super().init_weights()
            self.init_cfg = saved
        load_videomamba_checkpoint(
            self,
            pretrained['checkpoint'],
            allow_mismatch=pretrained.get('allow_mismatch', ()))
        self._is_init = True

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def forward_embed(self, x: Tensor) -> Tensor:
        """Video [B, in_channels, T, H, W] -> token sequence [B, L, C].

        L = 1 + T' * (N + P): CLS, then per frame N patch tokens and P zero
        prompt slots (P = 0 without SSP).
        """
        if x.dim() != 5:
            raise ValueError(f'VideoMamba expects [B, C, T, H, W] input, got '
                             f'shape {tuple(x.shape)}')
        expected = (self.num_frames, ) + self.img_size
        if tuple(x.shape[2:]) != expected:
            raise ValueError(
                f'VideoMamba was built for (T, H, W) = {expected} '
                f'(num_frames, img_size), got input {tuple(x.shape)}')
        x = self.patch_embed(x)  # [B, C, T', h, w]
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
        x = x + self.pos_embed[:, 1:].unsqueeze(1)
        x = x + self.temporal_pos_embedding[0][None, :, None]
        if self.num_prompts:
            slots = x.new_zeros(b, t, self.num_prompts, c)
            x = torch.cat([x, slots], dim=2)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        return torch.cat([cls.to(x.dtype), x.flatten(1, 2)], dim=1)

    def _apply_ssp(self, hidden: Tensor, layer_idx: int) -> Tensor:
        b, _, c = hidden.shape
        tokens = hidden[:, 1:].reshape(b, self.num_temporal_tokens, -1, c)
        tokens = self.ssp(tokens, layer_idx)
        return torch.cat([hidden[:, :1].to(tokens.dtype),
                          tokens.flatten(1, 2)], dim=1)

    def forward_blocks(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Run the blocks (with the SSP updates) on the token sequence.

        Returns:
            tuple[Tensor, Tensor]: The last block's mixer output and residual,
            each [B, L, C].
        """
        hidden, residual = x, None
        use_cp = self.with_cp and self.training and torch.is_grad_enabled()
        for idx, layer in enumerate(self.layers):
            if self.ssp is not None:
                hidden = self._apply_ssp(hidden, idx)
            if use_cp:
                hidden, residual = cp.checkpoint(
                    layer, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual)
        return hidden, residual

    def forward(self, x: Tensor) -> Tensor:
        """Video [B, in_channels, T, H, W] -> normed CLS feature [B, C]."""
        hidden, residual = self.forward_blocks(self.forward_embed(x))
        # Only the CLS position is read out; DropPath masks are per sample,
        # so slicing first is the same computation.
        cls = residual[:, :1] + self.drop_path(hidden[:, :1])
        return self.norm_f(cls, out_dtype=hidden.dtype)[:, 0]
