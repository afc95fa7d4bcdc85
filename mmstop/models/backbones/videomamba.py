# Copyright (c) mmstop contributors. All rights reserved.
"""VideoMamba backbone (Li et al., ECCV 2024) with optional SSP prompting.

Reproduces what the official VideoMamba ``video_sm`` model, as vendored by the
SSP release, computes (``docs/ssp.md``). Parameter names are the official ones
(``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``temporal_pos_embedding``, ``layers.{i}.mixer.*``, ``layers.{i}.norm``,
``norm_f``); the SSP modules live under ``ssp.`` (the official
``inner_prompt.*`` / ``prompt_attentions.*`` / ``dynamic_scales.*`` names are
accepted when loading). The classifier is not part of the backbone: the
backbone returns the normed CLS feature [B, C] for a linear head such as
MMAction2's ``TimeSformerHead``.

Checkpoints (``docs/ssp.md#checkpoints``): every ``load_state_dict`` of the
backbone adapts published tensors in a state-dict pre-hook
(:meth:`VideoMamba._prepare_checkpoint`), and
:meth:`VideoMamba.load_pretrained` / :func:`load_videomamba_checkpoint` load
a published VideoMamba or official SSP file strictly, with the known
differences of published checkpoints.
"""
import math
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple
from torch import Tensor, nn

from mmstop.models.converters.ssp_official import (MMSTOP_HEAD_PREFIX,
                                                   OFFICIAL_HEAD_KEY,
                                                   SSP_OFFICIAL_PREFIXES,
                                                   unwrap_official_ssp)
from mmstop.models.prompts.ssp import StateSpacePrompting
from mmstop.registry import MODELS
from mmstop.utils.checkpoint import (mismatch_error, read_checkpoint,
                                     split_pretrained_init_cfg)
from .mamba_mixer import BiMambaMixer, MambaBlock, RMSNorm

#: Extra modules of published checkpoints that no mmstop model has (the
#: self-distilled image models' ``distill_head``): skipped with a log line.
KNOWN_EXTRA_PREFIXES = ('distill_head.', )


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
    v = tuple(int(x) for x in to_2tuple(v))
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
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())
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
        self.freeze_backbone = (
            ssp is not None
            if freeze_backbone is None else bool(freeze_backbone))
        if self.freeze_backbone:
            self._freeze()
        self._register_load_state_dict_pre_hook(self._prepare_checkpoint)

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
        """Random init of the official VideoMamba
        (``docs/ssp.md#official-initialisation``).

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
        :meth:`load_pretrained` (published VideoMamba formats, strict:
        ``init_cfg=dict(type='Pretrained', checkpoint=...,
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
        self.load_pretrained(
            pretrained['checkpoint'],
            allow_mismatch=pretrained.get('allow_mismatch', ()))
        self._is_init = True

    # ------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------
    @staticmethod
    def inflate_patch_kernel(weight_2d: Tensor, time_dim: int) -> Tensor:
        """(C, 3, kh, kw) image kernel -> (C, 3, time_dim, kh, kw) with the
        kernel at temporal index ``time_dim // 2`` and zeros elsewhere
        ("center" inflation; ``unsqueeze(2)`` for ``time_dim = 1``).

        Args:
            weight_2d (Tensor): The image patch kernel.
            time_dim (int): Temporal kernel size (``tubelet_size``).

        Returns:
            Tensor: The video patch kernel.
        """
        out = weight_2d.new_zeros(weight_2d.shape[:2] + (time_dim, ) +
                                  weight_2d.shape[2:])
        out[:, :, time_dim // 2] = weight_2d
        return out

    @staticmethod
    def resize_pos_embed(pos_embed: Tensor, grid_size: Tuple[int,
                                                             int]) -> Tensor:
        """Resize a (1, 1 + g*g, C) spatial embedding to the (h, w) grid.

        The CLS slot is kept; the g x g grid (row-major) is resized
        bicubically with ``align_corners=False``.

        Args:
            pos_embed (Tensor): (1, 1 + g*g, C) embedding.
            grid_size (tuple[int, int]): Target patch grid (h, w).

        Returns:
            Tensor: (1, 1 + h*w, C) float32 embedding.

        Raises:
            ValueError: The embedding's grid is not square.
        """
        n = pos_embed.shape[1] - 1
        g = int(round(math.sqrt(n)))
        if g * g != n:
            raise ValueError(f'pos_embed with {n} grid tokens is not a '
                             f'square grid; cannot resize it to {grid_size}')
        c = pos_embed.shape[-1]
        grid = pos_embed[:, 1:].float().reshape(1, g, g, c).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid, size=tuple(grid_size), mode='bicubic', align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, c)
        return torch.cat([pos_embed[:, :1].float(), grid], dim=1)

    @staticmethod
    def resize_temporal_pos_embed(temporal: Tensor, length: int) -> Tensor:
        """Resize a (1, T, C) temporal embedding to ``length`` (linear,
        ``align_corners=False``; an identity when T == length).

        Args:
            temporal (Tensor): (1, T, C) embedding.
            length (int): Target number of temporal tokens.

        Returns:
            Tensor: (1, length, C) float32 embedding.
        """
        x = temporal.float().permute(0, 2, 1)
        x = F.interpolate(
            x, size=(length, ), mode='linear', align_corners=False)
        return x.permute(0, 2, 1)

    @staticmethod
    def _shape_hint(name: str) -> str:
        if name.startswith('ssp.inner_prompt.inter.convs'):
            return (' (the SSP frame-summary kernel covers the whole patch '
                    'grid: build the model with the img_size the checkpoint '
                    'was trained at)')
        if name.startswith('patch_embed.proj.weight'):
            return ' (patch_size / tubelet_size differ)'
        if name.startswith(('layers.', 'norm_f', 'cls_token', 'patch_embed')):
            return ' (a checkpoint of another arch?)'
        return ''

    def _adapt_tensor(self, name: str, value: Tensor,
                      param: Tensor) -> Tuple[Optional[Tensor], str]:
        """``(adapted value, what was done)`` for a tensor of another shape
        than ``param``, or ``(None, '')`` if no rule applies."""
        if (name == 'patch_embed.proj.weight' and value.dim() == 4
                and param.dim() == 5 and tuple(
                    value.shape) == tuple(param.shape[:2] + param.shape[3:])):
            return (self.inflate_patch_kernel(value, param.shape[2]),
                    'inflated the 2-D patch kernel')
        if value.dim() == 3 and value.shape[0] == 1 and (value.shape[-1]
                                                         == param.shape[-1]):
            if name == 'pos_embed':
                return (self.resize_pos_embed(value, self.grid_size),
                        'resized pos_embed (bicubic)')
            if name == 'temporal_pos_embedding':
                return (self.resize_temporal_pos_embed(value, param.shape[1]),
                        'resized temporal_pos_embedding (linear)')
        return None, ''

    def _prepare_checkpoint(self, state_dict: dict, prefix: str, *args,
                            **kwargs) -> None:
        """State-dict pre-hook (every ``load_state_dict``: ``load_from``,
        ``init_cfg``, plain PyTorch), like mmpretrain's
        ``_prepare_pos_embed``.

        With SSP, the official SSP names (``inner_prompt.*``,
        ``prompt_attentions.*``, ``dynamic_scales.*``) are renamed to
        ``ssp.*``. A tensor whose shape differs from the model's is adapted
        and logged: a 2-D (image) patch kernel is inflated to 3-D
        (:meth:`inflate_patch_kernel`), ``pos_embed`` (bicubic) and
        ``temporal_pos_embedding`` (linear) are resized to the model. Modifies
        ``state_dict`` (torch passes a copy of the caller's dict) for the keys
        under ``prefix``.

        Raises:
            ValueError: A tensor's shape differs from the model's and no
                rule adapts it; the message names the key and both shapes.
        """
        if self.ssp is not None:
            for key in [k for k in state_dict if k.startswith(prefix)]:
                rest = key[len(prefix):]
                if rest.startswith(SSP_OFFICIAL_PREFIXES):
                    new = prefix + 'ssp.' + rest
                    if new not in state_dict:
                        state_dict[new] = state_dict.pop(key)
        for name, param in self.named_parameters():
            key = prefix + name
            value = state_dict.get(key)
            if not isinstance(value, Tensor) or tuple(value.shape) == tuple(
                    param.shape):
                continue
            new, what = self._adapt_tensor(name, value, param)
            if new is None or tuple(new.shape) != tuple(param.shape):
                raise ValueError(
                    f'VideoMamba checkpoint tensor {key!r} has shape '
                    f'{tuple(value.shape)}, the model expects '
                    f'{tuple(param.shape)}{self._shape_hint(name)}')
            print_log(
                f'VideoMamba: {what}: {key} {tuple(value.shape)} -> '
                f'{tuple(new.shape)}',
                logger='current')
            state_dict[key] = new.to(value.dtype)

    def load_pretrained(self,
                        filename: str,
                        allow_mismatch: Sequence[str] = (),
                        head: Optional[nn.Linear] = None,
                        map_location='cpu',
                        logger='current') -> Dict[str, List[str]]:
        r"""Load a published VideoMamba or an official SSP checkpoint,
        strictly.

        The file may hold a bare state dict or wrap it in ``model`` /
        ``module`` / ``state_dict``; ``backbone.`` / ``encoder.`` prefixes are
        removed (:func:`~mmstop.models.converters.ssp_official.\
unwrap_official_ssp`). Tensors go through :meth:`_prepare_checkpoint`
        (inflation, position-embedding resizing, clear shape errors). The
        differences published checkpoints always have pass and are logged:

        * every SSP tensor missing (a plain VideoMamba checkpoint: SSP trains
          from scratch);
        * ``temporal_pos_embedding`` missing (image checkpoints: it keeps its
          zero init, as in the official code);
        * ``distill_head.*`` (self-distilled image models) in the file;
        * a classifier (``head.*`` / ``cls_head.fc_cls.*``) in the file when
          no ``head`` is given (a backbone owns no classifier).

        Any other missing or unexpected key, some but not all SSP tensors,
        and a classifier whose shape differs from ``head``'s raise
        :class:`~mmstop.utils.checkpoint.CheckpointMismatchError` naming every
        such key, unless it matches ``allow_mismatch`` (e.g.
        ``[r'cls_head\.']`` for a recognizer with a new class count); allowed
        keys keep their current values.

        Args:
            filename (str): Checkpoint path (``unsafe://path`` for full
                unpickling of a trusted file, or an mmengine-supported URL).
            allow_mismatch (Sequence[str]): Regular expressions
                (``re.match``) of keys that may be missing, unexpected or
                mis-shaped: backbone names (``layers.0.norm.weight``),
                checkpoint names after prefix removal (``extra.weight``) or
                ``cls_head.fc_cls.*``. Defaults to ().
            head (nn.Linear, optional): The recognizer's classifier
                (``cls_head.fc_cls``) to load ``head.*`` into. Defaults to
                None.
            map_location: Passed to the loader. Defaults to ``'cpu'``.
            logger: mmengine ``print_log`` logger. Defaults to
                ``'current'``.

        Returns:
            dict: ``missing`` (backbone keys not in the file), ``skipped``
            (checkpoint keys not loaded) and ``loaded_head`` (head keys
            loaded).

        Raises:
            FileNotFoundError: ``filename`` does not exist.
            ValueError: A backbone tensor has an unadaptable shape.
            CheckpointMismatchError: Keys differ beyond the known differences
                and ``allow_mismatch``.
        """
        patterns = [
            re.compile(p)
            for p in ([allow_mismatch] if isinstance(allow_mismatch, str
                                                     ) else allow_mismatch)
        ]

        def allowed(key):
            return any(p.match(key) for p in patterns)

        try:
            checkpoint = read_checkpoint(filename, map_location=map_location)
        except FileNotFoundError:
            raise FileNotFoundError('VideoMamba checkpoint file not found: '
                                    f'{filename!r}') from None
        sd = unwrap_official_ssp(checkpoint, source=filename)
        own = set(self.state_dict().keys())
        has_ssp = self.ssp is not None
        backbone_sd, head_sd, skipped, known = (OrderedDict(), OrderedDict(),
                                                [], [])
        for key, value in sd.items():
            if OFFICIAL_HEAD_KEY.match(key):
                head_sd[key[len('head.'):]] = value
            elif key.startswith(MMSTOP_HEAD_PREFIX):
                head_sd[key[len(MMSTOP_HEAD_PREFIX):]] = value
            elif key in own or (has_ssp
                                and key.startswith(SSP_OFFICIAL_PREFIXES)
                                and 'ssp.' + key in own):
                backbone_sd[key] = value
            elif key.startswith(KNOWN_EXTRA_PREFIXES):
                known.append(key)
            else:
                skipped.append(key)
        unexpected = [k for k in skipped if not allowed(k)]
        skipped += known
        if known:
            print_log(
                f'VideoMamba: {len(known)} key(s) of {filename} belong to '
                f'modules mmstop models do not have and were skipped: '
                f'{known[:10]}{" ..." if len(known) > 10 else ""}',
                logger=logger)

        result = self.load_state_dict(backbone_sd, strict=False)
        missing = list(result.missing_keys)
        ssp_missing = [k for k in missing if k.startswith('ssp.')]
        ssp_total = sum(k.startswith('ssp.') for k in own)
        other_missing = [k for k in missing if not k.startswith('ssp.')]
        bad_missing = [
            k for k in other_missing
            if k != 'temporal_pos_embedding' and not allowed(k)
        ]
        if ssp_missing and len(ssp_missing) < ssp_total:
            bad_missing += [k for k in ssp_missing if not allowed(k)]
        elif ssp_missing:
            print_log(
                f'VideoMamba: the {len(ssp_missing)} SSP tensor(s) are not in '
                f'{filename} and keep their init (trained from scratch)',
                logger=logger)
        if 'temporal_pos_embedding' in other_missing:
            print_log(
                f'VideoMamba: {filename} has no temporal_pos_embedding (an '
                'image checkpoint): it keeps its zero init',
                logger=logger)

        loaded_head, bad_head = [], []
        if head_sd:
            if head is None:
                print_log(
                    f'VideoMamba: classifier {sorted(head_sd)} of {filename} '
                    'not loaded: the backbone has no head (the recognizer\'s '
                    'cls_head owns the classifier)',
                    logger=logger)
                skipped += ['head.' + k for k in head_sd]
            else:
                ours = {k: v for k, v in head.state_dict().items()}
                same = (
                    set(head_sd) == set(ours) and all(
                        tuple(head_sd[k].shape) == tuple(ours[k].shape)
                        for k in ours))
                if same:
                    head.load_state_dict(head_sd)
                    loaded_head = [MMSTOP_HEAD_PREFIX + k for k in head_sd]
                    print_log(
                        f'VideoMamba: loaded the classifier of '
                        f'{filename} into cls_head.fc_cls',
                        logger=logger)
                else:
                    for k in sorted(set(head_sd) | set(ours)):
                        name = MMSTOP_HEAD_PREFIX + k
                        if not allowed(name):
                            bad_head.append((
                                name,
                                *(tuple(t.shape) if t is not None else 'absent'
                                  for t in (head_sd.get(k), ours.get(k)))))
                    if not bad_head:
                        print_log(
                            f'VideoMamba: classifier of {filename} skipped '
                            '(allowed by allow_mismatch): cls_head.fc_cls '
                            'keeps its init',
                            logger=logger,
                            level=30)
                    skipped += ['head.' + k for k in head_sd]
        if unexpected or bad_missing or bad_head:
            raise mismatch_error(
                f'VideoMamba checkpoint {filename} does not match the model:',
                bad_missing,
                unexpected,
                bad_head,
                hint="allow_mismatch (for pretrained=..., use init_cfg=dict("
                "type='Pretrained', checkpoint=..., allow_mismatch=[...]))")
        tolerated = [k for k in skipped + missing if allowed(k)]
        if tolerated:
            print_log(
                f'VideoMamba: key(s) of {filename} allowed by allow_mismatch '
                f'and skipped: {tolerated}',
                logger=logger,
                level=30)
        return dict(missing=missing, skipped=skipped, loaded_head=loaded_head)

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

    def _apply_ssp(self,
                   hidden: Tensor,
                   layer_idx: int,
                   intermediates: Optional[dict] = None) -> Tensor:
        b, _, c = hidden.shape
        tokens = hidden[:, 1:].reshape(b, self.num_temporal_tokens, -1, c)
        if intermediates is None:
            tokens = self.ssp(tokens, layer_idx)
        else:
            tokens, out = self.ssp(
                tokens, layer_idx, return_intermediates=True)
            for key, value in out.items():
                intermediates.setdefault(key, []).append(value)
        return torch.cat(
            [hidden[:, :1].to(tokens.dtype),
             tokens.flatten(1, 2)], dim=1)

    def forward_blocks(self,
                       x: Tensor,
                       intermediates: Optional[dict] = None
                       ) -> Tuple[Tensor, Tensor]:
        """Run the blocks (with the SSP updates) on the token sequence.

        Args:
            x (Tensor): The token sequence [B, L, C].
            intermediates (dict, optional): Where the SSP intermediates of
                every block are appended (lists under the keys of
                :meth:`StateSpacePrompting.forward`). Defaults to None.

        Returns:
            tuple[Tensor, Tensor]: The last block's mixer output and residual,
            each [B, L, C].
        """
        hidden, residual = x, None
        use_cp = self.with_cp and self.training and torch.is_grad_enabled()
        for idx, layer in enumerate(self.layers):
            if self.ssp is not None:
                hidden = self._apply_ssp(hidden, idx, intermediates)
            if use_cp:
                hidden, residual = cp.checkpoint(
                    layer, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual)
        return hidden, residual

    def forward(self, x: Tensor, return_intermediates: bool = False):
        """Video [B, in_channels, T, H, W] -> normed CLS feature [B, C].

        Args:
            x (Tensor): The video.
            return_intermediates (bool): Also return a dict of what SSP
                computed, stacked over the blocks: ``ssp_gathering``
                ``[depth, B, T', N]`` (how much each patch adds to its
                frame's vector in Intra-Frame Gathering, see
                :meth:`StateSpacePrompting.forward`) and
                ``ssp_frame_weights`` ``[depth - 1, B, T']`` (the
                entropy-based frame importance of Inter-Frame Spreading,
                blocks 1 ...). Empty without SSP. Defaults to False.

        Returns:
            Tensor | tuple: The feature (and the intermediates).
        """
        intermediates = {} if return_intermediates else None
        hidden, residual = self.forward_blocks(
            self.forward_embed(x), intermediates)
        # Only the CLS position is read out; DropPath masks are per sample,
        # so slicing first is the same computation.
        cls = residual[:, :1] + self.drop_path(hidden[:, :1])
        feature = self.norm_f(cls, out_dtype=hidden.dtype)[:, 0]
        if not return_intermediates:
            return feature
        return feature, {
            f'ssp_{key}': torch.stack(values)
            for key, values in intermediates.items()
        }


def load_videomamba_checkpoint(model: nn.Module,
                               filename: str,
                               map_location='cpu',
                               logger='current',
                               allow_mismatch: Sequence[str] = ()
                               ) -> Dict[str, List[str]]:
    r"""Load a published VideoMamba or an official SSP checkpoint into a
    :class:`VideoMamba` or a recognizer holding one, strictly.

    For a recognizer (``.backbone`` a :class:`VideoMamba`), a linear
    ``.cls_head.fc_cls`` receives the file's classifier (``head.*``); see
    :meth:`VideoMamba.load_pretrained` for the rules.

    Args:
        model (nn.Module): A :class:`VideoMamba` or a recognizer with one as
            ``.backbone``.
        filename (str): Checkpoint path, ``unsafe://path`` or URL.
        map_location: Passed to the loader. Defaults to ``'cpu'``.
        logger: mmengine ``print_log`` logger. Defaults to ``'current'``.
        allow_mismatch (Sequence[str]): Key patterns that may differ, e.g.
            ``[r'cls_head\.']``. Defaults to ().

    Returns:
        dict: As :meth:`VideoMamba.load_pretrained`.

    Raises:
        TypeError: ``model`` is neither.
    """
    if isinstance(model, VideoMamba):
        backbone, fc = model, None
    else:
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, VideoMamba):
            raise TypeError('load_videomamba_checkpoint expects a VideoMamba '
                            'backbone or a recognizer whose .backbone is one, '
                            f'got {type(model).__name__}')
        fc = getattr(getattr(model, 'cls_head', None), 'fc_cls', None)
        fc = fc if isinstance(fc, nn.Linear) else None
    return backbone.load_pretrained(
        filename,
        allow_mismatch=allow_mismatch,
        head=fc,
        map_location=map_location,
        logger=logger)
