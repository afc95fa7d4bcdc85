# Copyright (c) mmstop contributors. All rights reserved.
"""Official-mode STOP at frame/batch counts that have no golden data.

The golden files of ``../shared/parity/stop`` cover two configurations only
(T=4, B=2 and T=12, B=3). Parity must hold for any ``T``, ``B`` and prompt
generator, so this file carries a second, independent reference:
:func:`official_forward`, a compact functional re-derivation of the official
forward (zhoujiahuan1991/CVPR2025-STOP @ 7253928, ``modules/clip.py`` and
``modules/temporal_prompting.py``; ``docs/stop.md``), written with
``torch.nn.functional`` directly on the *official-named* state dict. It shares
no code with :class:`mmstop.models.backbones.STOPCLIP` and deliberately keeps
the official data layout and operation order:

* sequence-first (LND) token tensors; the visual sequence of a video is
  ``[4 global ; slot-major/frame-minor frame tokens]``, token ``s`` of frame
  ``t`` at position ``4 + s*T + t``;
* inside a block the frame tokens are viewed as ``[slots, T*B, D]`` (column
  ``t*B + b``) and the keys of column ``i`` are the global prompts of video
  ``i mod B`` followed by that column's own tokens;
* ``x + mlp(ln_2(x)) + 0.1*LoRA(x)``; prompt slots replaced before layers
  ``l >= 1``; inter prompt ``x*(1+w)*0.05`` added to the local prompts of
  every layer (linear mode tiles its 4 local prompts ``T`` times first);
  ``w`` min-max normalised over all ``B*T`` frames of the batch;
* text ``[SOT ; 4 prefix ; tokens 1.. ; 4 postfix]``, EOT at
  ``argmax(ids) + 4``; video feature = first global token after ``ln_post``
  and ``proj``.

The reference is first proved against the golden files (T=4, B=2 and
T=12, B=3 in float32, T=4 also in float64; ``slow`` tests), then mmstop is
compared with it at other ``(T, B, mode)``:

* full ViT-B/32 size, float32, golden tolerances (the official module is only
  defined at this size: 224 px, width 768, 12 layers, 49 patches are hard
  coded in it); ``slow`` tests, as every test that builds this size;
* a *reduced* model (32 px, patch 8, 4x4 grid, width 128, 3 layers), float64,
  atol 1e-10. The official code cannot run at this size; the reduced
  reference takes every size from the state-dict shapes. It checks the
  layout and ordering (frames, videos, slots, layers, batch coupling) at many
  ``(T, B)`` cheaply, not the official hard-coded sizes.

Also: the batch coupling (a sub-batch changes a video's feature, identically
in both) and T=1, B=1, where the official batch min-max is 0/0 and every video
feature is NaN (``docs/stop.md#batch-coupling-and-single-frame-batches``;
mmstop's official mode refuses that batch with an error).
Inputs are real frames of ``inputs_T12_B3.pt``; each run first checks that the
top-6 region mask is decisive (margin above float32 noise).
"""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from helpers import STOP_TOL32, STOP_TOL64
from helpers.stop import official_layout_forward

from mmstop.models.backbones import STOPCLIP
from mmstop.models.converters import convert_official_stop

pytestmark = pytest.mark.parity

# every tensor both implementations expose (golden-data names,
# docs/parity.md#stop-golden-data)
COMPARED = ('prompted_pixels', 'mask_pooled', 'h0', 'inter_attn', 'w_raw', 'w',
            'inter_prompt', 'TP', 'VP', 'vis_global_layers', 'vis_cls_layers',
            'txt_eot_layers', 'video_feature', 'text_feature', 'sim',
            'logit_scale_exp')

N_GLOBAL = 4  # official: global_visual_prompt_length
N_LOCAL = 4  # official: local_each_frame_prompt_length (= inter prompts)
N_PREFIX = 4  # official: text_prompt_length // 2
TOP_K = 6  # official: TemporalPrompt_3.eta


# ---------------------------------------------------------------------------
# independent functional re-derivation of the official forward
# ---------------------------------------------------------------------------
def _ln(sd, prefix, x):
    return F.layer_norm(
        x,
        x.shape[-1:],
        sd[prefix + '.weight'],
        sd[prefix + '.bias'],
        eps=1e-5)


def _prelu(x, slope):
    return torch.where(x >= 0, x, slope * x)


def _quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _conv3d(x, weight, bias, padding):
    """Stride-1 Conv3d. float32: ``F.conv3d`` as officially; float64: a sum of
    2D convolutions over the temporal taps, in chunks of frames and input
    channels (torch's CPU float64 Conv3d needs > 12 GB here,
    docs/parity.md#stop-golden-data).
    """
    if x.dtype != torch.float64:
        return F.conv3d(x, weight, bias, padding=padding)
    pt, ph, pw = padding
    B, C, T, H, W = x.shape
    O, _, kt, kh, kw = weight.shape
    xp = F.pad(x, (0, 0, 0, 0, pt, pt)).transpose(1, 2)  # [B, T+2pt, C, H, W]
    out = torch.zeros(
        B * T, O, H + 2 * ph - kh + 1, W + 2 * pw - kw + 1, dtype=x.dtype)
    budget = 3e7  # float64 values of one im2col buffer (240 MB)
    c_step = max(1, min(C, int(budget // (kh * kw * H * W))))
    f_step = max(1, int(budget // (c_step * kh * kw * H * W)))
    for k in range(kt):
        src = xp[:, k:k + T].reshape(B * T, C, H, W)
        for c in range(0, C, c_step):
            for f in range(0, B * T, f_step):
                out[f:f + f_step] += F.conv2d(
                    src[f:f + f_step, c:c + c_step],
                    weight[:, c:c + c_step, k],
                    padding=(ph, pw))
    out = out.reshape(B, T, *out.shape[1:]).transpose(1, 2)
    return out + bias.view(1, -1, 1, 1, 1)


def _mha(sd, prefix, q, k, v, heads, attn_mask=None):
    """``nn.MultiheadAttention`` maths on sequence-first [L, N, D] inputs."""
    D = q.shape[-1]
    w, b = sd[prefix + 'in_proj_weight'], sd[prefix + 'in_proj_bias']
    q = F.linear(q, w[:D], b[:D])
    k = F.linear(k, w[D:2 * D], b[D:2 * D])
    v = F.linear(v, w[2 * D:], b[2 * D:])
    Lq, N, Lk, hd = q.shape[0], q.shape[1], k.shape[0], D // heads
    q = q.reshape(Lq, N * heads, hd).transpose(0, 1)
    k = k.reshape(Lk, N * heads, hd).transpose(0, 1)
    v = v.reshape(Lk, N * heads, hd).transpose(0, 1)
    att = q @ k.transpose(1, 2) / math.sqrt(hd)
    if attn_mask is not None:
        att = att + attn_mask
    out = (att.softmax(dim=-1) @ v).transpose(0, 1).reshape(Lq, N, D)
    return F.linear(out, sd[prefix + 'out_proj.weight'],
                    sd[prefix + 'out_proj.bias'])


def _mlp(sd, p, x):
    h = _quick_gelu(
        F.linear(x, sd[p + 'mlp.c_fc.weight'], sd[p + 'mlp.c_fc.bias']))
    return F.linear(h, sd[p + 'mlp.c_proj.weight'], sd[p + 'mlp.c_proj.bias'])


def _lora(sd, p, x):
    h = F.linear(x, sd[p + 'LoRA.0.weight'], sd[p + 'LoRA.0.bias'])
    h = _prelu(h, sd[p + 'LoRA.1.weight'])
    return F.linear(h, sd[p + 'LoRA.2.weight'], sd[p + 'LoRA.2.bias'])


def _visual_block(sd, p, x, T, heads):
    """``ResidualAttentionBlock.forward`` (visual branch), x: [4+S*T, B, D]."""
    B, D = x.shape[1], x.shape[2]
    g = _ln(sd, p + 'ln_1', x[:N_GLOBAL])  # [4, B, D]
    fr = _ln(sd, p + 'ln_1', x[N_GLOBAL:].reshape(-1, T * B, D))  # [S, T*B, D]
    # keys of column i (= frame i // B of video i % B): globals of video i % B
    col_video = torch.arange(T * B) % B
    keys1 = torch.cat([g[:, col_video], fr], dim=0)
    out_f = _mha(sd, p + 'attn.', fr, keys1, keys1, heads).reshape(-1, B, D)
    keys2 = torch.cat([g, fr.reshape(-1, B, D)], dim=0)
    out_g = _mha(sd, p + 'attn.', g, keys2, keys2, heads)
    x = x + torch.cat([out_g, out_f], dim=0)
    return x + _mlp(sd, p, _ln(sd, p + 'ln_2', x)) + 0.1 * _lora(sd, p, x)


def _text_block(sd, p, x, heads, mask):
    x_ln = _ln(sd, p + 'ln_1', x)
    x = x + _mha(sd, p + 'attn.', x_ln, x_ln, x_ln, heads, mask)
    return x + _mlp(sd, p, _ln(sd, p + 'ln_2', x)) + 0.1 * _lora(sd, p, x)


def official_forward(sd, frames, ids, T, mode, vision_heads=12, text_heads=8):
    """Official STOP forward (eval mode) on an official-named state dict.

    Args:
        sd (dict): Official parameter names -> tensors (any consistent sizes).
        frames (Tensor): ``[B*T, 3, H, W]``, frame t of video b at ``b*T+t``.
        ids (Tensor): Token ids ``[B, L]``.
        T (int): Frames per video.
        mode (str): ``'transformer'`` or ``'linear'``.
        vision_heads (int): Heads of every visual MHA (frozen blocks and the
            inter-frame attention; officially width // 64 = 12).
        text_heads (int): Heads of the text blocks (officially 8).

    Returns:
        dict: golden-data names (``prompted_pixels`` at full size) plus
        ``mask_margin`` (gap between the kept and the first dropped cell).
    """
    dtype = frames.dtype
    sd = {k: v.to(dtype) for k, v in sd.items()}
    BT, C, H, W = frames.shape
    B = BT // T
    D = sd['visual.conv1.weight'].shape[0]
    P = sd['visual.conv1.weight'].shape[-1]
    G = H // P
    n_layers = sum(1 for k in sd
                   if k.startswith('visual.transformer.resblocks.')
                   and k.endswith('.ln_1.weight'))
    tp = 'visual.TemporalPrompt.'
    out = {}

    # A: intra-frame prompt in pixel space (TemporalPrompt_3.forward/get_mask)
    x = frames.reshape(B, T, C, H, W)
    pr = x.permute(0, 2, 1, 3, 4)
    pr = _conv3d(pr, sd[tp + 'Conv.0.weight'], sd[tp + 'Conv.0.bias'],
                 (1, 5, 5))
    pr = _conv3d(pr, sd[tp + 'Conv.1.weight'], sd[tp + 'Conv.1.bias'],
                 (1, 5, 5))
    pr = _prelu(pr, sd[tp + 'Conv.2.weight'])
    pr = _conv3d(pr, sd[tp + 'Conv.3.weight'], sd[tp + 'Conv.3.bias'],
                 (1, 5, 5))
    pr = _prelu(pr, sd[tp + 'Conv.4.weight'])
    pr = _conv3d(pr, sd[tp + 'Conv.5.weight'], sd[tp + 'Conv.5.bias'],
                 (1, 5, 5))
    pr = pr.permute(0, 2, 3, 4, 1)  # [B,T,H,W,16]
    pr = F.linear(pr, sd[tp + 'MLP.0.weight'], sd[tp + 'MLP.0.bias'])
    pr = _prelu(pr, sd[tp + 'MLP.1.weight'])
    pr = F.linear(pr, sd[tp + 'MLP.2.weight'], sd[tp + 'MLP.2.bias'])
    pr = pr.permute(0, 1, 4, 2, 3)  # [B,T,3,H,W]
    score = _conv3d(
        x.permute(0, 2, 1, 3, 4), sd[tp + 'Cal_Net.weight'],
        sd[tp + 'Cal_Net.bias'], (2, 5, 5)).squeeze(1)
    # official reshape (B, T, 32, 7, 32, 7): residue classes modulo the grid
    pooled = score.reshape(B, T, H // G, G, W // G, G).mean(dim=(2, 4))
    ranked = pooled.reshape(B, T, -1).sort(dim=2, descending=True)[0]
    mask = pooled > ranked[:, :, TOP_K][:, :, None, None]
    out.update(
        mask_pooled=pooled,
        mask=mask,
        mask_margin=(ranked[:, :, TOP_K - 1] - ranked[:, :, TOP_K]).min())
    pix = mask[:, :, None, :, None, :].repeat(1, 1, H // G, 1, W // G, 1)
    pix = pix.reshape(B, T, H, W)[:, :, None]
    x = x + pr * 0.05 + pr * pix * 0.05
    out['prompted_pixels'] = x.reshape(BT, C, H, W)

    # B: frozen patch embedding
    h = F.conv2d(x.reshape(BT, C, H, W), sd['visual.conv1.weight'], stride=P)
    h = h.reshape(BT, D, -1).permute(0, 2, 1)
    cls = sd['visual.class_embedding'] + torch.zeros(BT, 1, D, dtype=dtype)
    h = torch.cat([cls, h], dim=1) + sd['visual.positional_embedding']
    h0 = _ln(sd, 'visual.ln_pre', h)  # [BT,1+N,D]
    out['h0'] = h0
    N = h0.shape[1] - 1

    # C: inter-frame prompt (get_inter_frame_prompt / get_mask_Inter)
    z = h0.reshape(B, T, N + 1, D)[:, :, 1:].reshape(B, T * N, D)
    z = z.permute(1, 0, 2)
    z = _mha(sd, tp + 'Attention.', z, z, z, vision_heads)
    z = z.permute(1, 0, 2).reshape(B, T, N, D)
    out['inter_attn'] = z
    vol = z[:, None]  # [B,1,T,N,D]
    var = _conv3d(vol, sd[tp + 'Cal_Net_Inter.weight'],
                  sd[tp + 'Cal_Net_Inter.bias'], (2, 5, 5)).squeeze(1)
    var = var + var * mask.reshape(B, T, N, 1)
    w_raw = var.mean(dim=(2, 3))
    w = (w_raw - w_raw.min()) / (w_raw.max() - w_raw.min())  # whole batch
    out.update(w_raw=w_raw, w=w)
    q = _conv3d(vol, sd[tp + 'InterConv.0.weight'],
                sd[tp + 'InterConv.0.bias'], (1, 7, 12))
    q = _prelu(q, sd[tp + 'InterConv.1.weight'])
    q = _conv3d(q, sd[tp + 'InterConv.2.weight'], sd[tp + 'InterConv.2.bias'],
                (1, 7, 12)).squeeze(1)
    q = q.permute(0, 1, 3, 2)  # [B,T,D,N]
    q = F.linear(q, sd[tp + 'InterMLP.0.weight'], sd[tp + 'InterMLP.0.bias'])
    q = _prelu(q, sd[tp + 'InterMLP.1.weight'])
    q = F.linear(q, sd[tp + 'InterMLP.2.weight'], sd[tp + 'InterMLP.2.bias'])
    q = q.permute(0, 1, 3, 2)  # [B,T,4,D]
    q = q + q * w[:, :, None, None]
    inter = q.reshape(B, -1, D) * 0.05  # [B,4T,D]
    out['inter_prompt'] = inter

    # D: DGL prompts (encode_prompt), one batch copy
    if mode == 'transformer':
        emb = sd['unified_prompt_embedding.weight']  # [8+4T, nL*D]
        u = emb.reshape(emb.shape[0], n_layers, D)  # LND: [Lp, nL, D]
        pp = 'PromptTransformer.resblocks.0.'
        u_ln = _ln(sd, pp + 'ln_1', u)
        u = u + _mha(sd, pp + 'attn.', u_ln, u_ln, u_ln, D // 64)
        u = u + _mlp(sd, pp, _ln(sd, pp + 'ln_2', u))
        u = u.permute(1, 0, 2)  # [nL, Lp, D]
        t = _quick_gelu(
            F.linear(u[:, :2 * N_PREFIX], sd['unified_prompt_mlp.c_fc.weight'],
                     sd['unified_prompt_mlp.c_fc.bias']))
        tprompt = F.linear(t, sd['unified_prompt_mlp.c_proj.weight'],
                           sd['unified_prompt_mlp.c_proj.bias'])
        vprompt = u[:, 2 * N_PREFIX:]  # [nL, 4T, D]
        local = vprompt
    else:
        theta = sd['visual_prompt_embedding'][0]  # [4, nL*D]
        # [nL,4,D]
        vprompt = theta.reshape(N_LOCAL, n_layers, D).permute(1, 0, 2)
        tprompt = torch.cat([
            F.linear(vprompt, sd['prefix_text_prompt_proj_layer.weight'],
                     sd['prefix_text_prompt_proj_layer.bias']),
            F.linear(vprompt, sd['postfix_text_prompt_proj_layer.weight'],
                     sd['postfix_text_prompt_proj_layer.bias'])
        ],
                            dim=1)
        local = vprompt.repeat(1, T, 1)  # tiled T times
    out.update(TP=tprompt, VP=vprompt)
    local = local[:, None] + inter[None]  # [nL,B,4T,D]

    # E-G: token sequence (incorporate_prompt), deep prompts, blocks
    tok = h0.reshape(B, T, N + 1, D)
    tok = torch.cat(
        [tok[:, :, :1], local[0].reshape(B, T, N_LOCAL, D), tok[:, :, 1:]],
        dim=2)  # [B,T,S,D]
    S = tok.shape[2]
    tok = tok.permute(0, 2, 1, 3).reshape(B, S * T, D)  # 4+s*T+t
    glob = sd['visual.prompt_embeddings'].expand(B, -1, -1)
    seq = torch.cat([glob, tok], dim=1).permute(1, 0, 2)  # LND
    globals_, cls_ = [], []
    for layer in range(n_layers):
        if layer > 0:
            lp = local[layer].reshape(B, T, N_LOCAL, D).permute(2, 1, 0, 3)
            rest = seq[N_GLOBAL:].reshape(S, T, B, D)
            rest = torch.cat([rest[:1], lp, rest[1 + N_LOCAL:]], dim=0)
            seq = torch.cat([seq[:N_GLOBAL], rest.reshape(-1, B, D)], dim=0)
        seq = _visual_block(sd, f'visual.transformer.resblocks.{layer}.', seq,
                            T, vision_heads)
        globals_.append(seq[:N_GLOBAL].permute(1, 0, 2))
        cls_.append(seq[N_GLOBAL:N_GLOBAL + T].permute(1, 0, 2))  # slot 0
    hid = _ln(sd, 'visual.ln_post', seq.permute(1, 0, 2)) @ sd['visual.proj']
    video = hid[:, 0]
    out.update(
        vis_global_layers=torch.stack(globals_),
        vis_cls_layers=torch.stack(cls_),
        video_feature=video,
        visual_tokens=hid)  # [B,L,E]

    # text (encode_text / incorporate_text_prompt / forward_deep_text_prompt)
    L = ids.shape[1]
    e = sd['token_embedding.weight'][ids] + sd['positional_embedding'][:L]
    tpb = tprompt[:, None].expand(-1, B, -1, -1)  # [nL,B,8,w]

    def insert(first, words, layer):
        return torch.cat(
            [first, tpb[layer, :, :N_PREFIX], words, tpb[layer, :, N_PREFIX:]],
            dim=1)

    seq = insert(e[:, :1], e[:, 1:], 0).permute(1, 0, 2)  # [L+8,B,w]
    n = seq.shape[0]
    causal = torch.full((n, n), float('-inf'), dtype=dtype).triu(1)
    eot = ids.argmax(dim=-1) + N_PREFIX
    rows = torch.arange(B)
    eots = []
    for layer in range(n_layers):
        if layer > 0:
            seq = insert(seq[:1].permute(1, 0, 2),
                         seq[N_PREFIX + 1:N_PREFIX + L].permute(1, 0, 2),
                         layer).permute(1, 0, 2)
        seq = _text_block(sd, f'transformer.resblocks.{layer}.', seq,
                          text_heads, causal)
        eots.append(seq[eot, rows])
    text = (_ln(sd, 'ln_final', seq.permute(1, 0, 2))
            @ sd['text_projection'])[rows, eot]
    out.update(txt_eot_layers=torch.stack(eots), text_feature=text)

    scale = sd['logit_scale'].exp()
    vn = video / video.norm(dim=-1, keepdim=True)
    tn = text / text.norm(dim=-1, keepdim=True)
    out.update(sim=scale * tn @ vn.t(), logit_scale_exp=scale)
    return out


# ---------------------------------------------------------------------------
# weights, inputs, models
# ---------------------------------------------------------------------------
_TENSORS = {}
_INPUTS = {}


@pytest.fixture(scope='module', autouse=True)
def _free_caches():
    """Weights, inputs and the last model are cached across this module's
    tests only."""
    yield
    _TENSORS.clear()
    _INPUTS.clear()
    _LAST.clear()


def _make(weights, name, shape):
    key = (name, tuple(shape))
    if key not in _TENSORS:
        _TENSORS[key] = weights.make_tensor(name, shape)
    return _TENSORS[key]


def full_state_dict(weights, T, mode):
    """``weights.official_state_dict(T, mode)``, frozen keys cached."""
    return {
        k: _make(weights, k, s)
        for k, s, _ in weights.official_keys(T, mode)
    }


# reduced sizes (official names, shapes scaled down); see the module doc
SMALL = dict(
    image=32,
    patch=8,
    width=128,
    layers=3,
    text_width=64,
    embed=32,
    context=77,
    vocab=49408)
SMALL_ARCH = dict(
    embed_dims=SMALL['embed'],
    image_size=SMALL['image'],
    patch_size=SMALL['patch'],
    vision_width=SMALL['width'],
    vision_layers=SMALL['layers'],
    vision_heads=SMALL['width'] // 64,
    context_length=SMALL['context'],
    vocab_size=SMALL['vocab'],
    text_width=SMALL['text_width'],
    text_heads=SMALL['text_width'] // 64,
    text_layers=SMALL['layers'])


def _block_keys(prefix, d, adapter=True):
    keys = [('attn.in_proj_weight', (3 * d, d)),
            ('attn.in_proj_bias', (3 * d, )), ('attn.out_proj.weight', (d, d)),
            ('attn.out_proj.bias', (d, )), ('ln_1.weight', (d, )),
            ('ln_1.bias', (d, )), ('mlp.c_fc.weight', (4 * d, d)),
            ('mlp.c_fc.bias', (4 * d, )), ('mlp.c_proj.weight', (d, 4 * d)),
            ('mlp.c_proj.bias', (d, )), ('ln_2.weight', (d, )),
            ('ln_2.bias', (d, ))]
    if adapter:
        keys += [('LoRA.0.weight', (32, d)), ('LoRA.0.bias', (32, )),
                 ('LoRA.1.weight', (1, )), ('LoRA.2.weight', (d, 32)),
                 ('LoRA.2.bias', (d, ))]
    return [(prefix + k, s) for k, s in keys]


def small_state_dict(weights, T, mode):
    """Official-named state dict at the reduced sizes, values from
    ``weights.make_tensor`` (same rules as the golden weights)."""
    D, tw = SMALL['width'], SMALL['text_width']
    nL, E = SMALL['layers'], SMALL['embed']
    N = (SMALL['image'] // SMALL['patch'])**2
    tp = 'visual.TemporalPrompt.'
    keys = [('positional_embedding', (SMALL['context'], tw)),
            ('text_projection', (tw, E)), ('logit_scale', ()),
            ('visual.class_embedding', (D, )),
            ('visual.positional_embedding', (N + 1, D)),
            ('visual.proj', (D, E)),
            ('visual.prompt_embeddings', (1, N_GLOBAL, D)),
            ('visual.conv1.weight', (D, 3, SMALL['patch'], SMALL['patch'])),
            ('visual.ln_pre.weight', (D, )), ('visual.ln_pre.bias', (D, )),
            ('visual.ln_post.weight', (D, )), ('visual.ln_post.bias', (D, )),
            ('token_embedding.weight', (SMALL['vocab'], tw)),
            ('ln_final.weight', (tw, )), ('ln_final.bias', (tw, ))]
    for name, shape in (('Conv.0.weight', (9, 3, 3, 11, 11)),
                        ('Conv.0.bias', (9, )), ('Conv.1.weight', (9, 9, 3, 11,
                                                                   11)),
                        ('Conv.1.bias', (9, )), ('Conv.2.weight', (1, )),
                        ('Conv.3.weight', (9, 9, 3, 11, 11)), ('Conv.3.bias',
                                                               (9, )),
                        ('Conv.4.weight',
                         (1, )), ('Conv.5.weight',
                                  (16, 9, 3, 11, 11)), ('Conv.5.bias', (16, )),
                        ('MLP.0.weight', (16, 16)), ('MLP.0.bias', (16, )),
                        ('MLP.1.weight', (1, )), ('MLP.2.weight', (3, 16)),
                        ('MLP.2.bias', (3, )), ('Cal_Net.weight',
                                                (1, 3, 5, 11,
                                                 11)), ('Cal_Net.bias', (1, )),
                        ('Attention.in_proj_weight',
                         (3 * D, D)), ('Attention.in_proj_bias', (3 * D, )),
                        ('Attention.out_proj.weight',
                         (D, D)), ('Attention.out_proj.bias',
                                   (D, )), ('InterConv.0.weight',
                                            (9, 1, 3, 15,
                                             25)), ('InterConv.0.bias', (9, )),
                        ('InterConv.1.weight',
                         (1, )), ('InterConv.2.weight',
                                  (1, 9, 3, 15, 25)), ('InterConv.2.bias',
                                                       (1, )),
                        ('InterMLP.0.weight',
                         (16, N)), ('InterMLP.0.bias',
                                    (16, )), ('InterMLP.1.weight',
                                              (1, )), ('InterMLP.2.weight',
                                                       (N_LOCAL, 16)),
                        ('InterMLP.2.bias',
                         (N_LOCAL, )), ('Cal_Net_Inter.weight',
                                        (1, 1, 5, 11,
                                         11)), ('Cal_Net_Inter.bias', (1, ))):
        keys.append((tp + name, shape))
    for i in range(nL):
        keys += _block_keys(f'visual.transformer.resblocks.{i}.', D)
        keys += _block_keys(f'transformer.resblocks.{i}.', tw)
    if mode == 'transformer':
        keys += [('unified_prompt_mlp.c_fc.weight', (2 * D, D)),
                 ('unified_prompt_mlp.c_fc.bias', (2 * D, )),
                 ('unified_prompt_mlp.c_proj.weight', (tw, 2 * D)),
                 ('unified_prompt_mlp.c_proj.bias', (tw, )),
                 ('unified_prompt_embedding.weight',
                  (2 * N_PREFIX + N_LOCAL * T, nL * D))]
        keys += _block_keys('PromptTransformer.resblocks.0.', D, adapter=False)
    else:
        keys += [('visual_prompt_embedding', (1, N_LOCAL, nL * D)),
                 ('prefix_text_prompt_proj_layer.weight', (tw, D)),
                 ('prefix_text_prompt_proj_layer.bias', (tw, )),
                 ('postfix_text_prompt_proj_layer.weight', (tw, D)),
                 ('postfix_text_prompt_proj_layer.bias', (tw, ))]
    return {k: _make(weights, k, s) for k, s in keys}


def build_mmstop(sd, T, mode, arch, dtype, **kwargs):
    model = STOPCLIP(arch=arch, num_frames=T, prompt_generator=mode, **kwargs)
    model.load_state_dict(convert_official_stop(sd), strict=True)
    return model.to(dtype).eval()


def make_inputs(weights, parity_dir, T, B, size=224, dtype=torch.float32):
    """``B`` videos of ``T`` real frames and captions from ``inputs_T12_B3``:
    video ``b`` = frames ``(b//3)*T ... +T-1`` of stored video ``b % 3``."""
    if 'T12' not in _INPUTS:
        _INPUTS['T12'] = torch.load(osp.join(parity_dir, 'inputs_T12_B3.pt'))
    inp = _INPUTS['T12']
    assert (B + 2) // 3 * T <= 12, 'not enough stored frames'
    src = weights.load_frames(inp, dtype).reshape(3, 12, 3, 224, 224)
    frames = torch.stack([
        src[b % 3, (b // 3) * T:(b // 3 + 1) * T] for b in range(B)
    ]).flatten(0, 1)
    if size != 224:  # reduced model: 4x subsampled centre crop
        frames = frames[..., ::4, ::4]
        off = (56 - size) // 2
        frames = frames[..., off:off + size, off:off + size].contiguous()
    ids = inp['text_ids'][[b % 3 for b in range(B)]]
    return frames, ids


def assert_same(actual, expected, f64, keys=COMPARED):
    """Boolean mask exactly, then every key in stage order (golden tolerances
    in float32, 1e-10 in float64)."""
    assert torch.equal(actual['mask'], expected['mask']), 'mask'
    for key in keys:
        a, e = actual[key], expected[key]
        assert tuple(a.shape) == tuple(e.shape), (key, a.shape, e.shape)
        atol = STOP_TOL64 if f64 else STOP_TOL32[key]
        torch.testing.assert_close(
            a.to(e.dtype),
            e,
            rtol=0,
            atol=atol,
            msg=lambda m, key=key: f'{key}: {m}')


def assert_decisive(ref, f64):
    """The inputs keep the top-6 mask well defined: the kept and the first
    dropped cell differ by more than the float32 tolerance of the pooled
    scores (docs/parity.md#stop-golden-data), else a mask mismatch would say
    nothing."""
    margin = float(ref['mask_margin'])
    assert margin > (1e-9 if f64 else STOP_TOL32['mask_pooled']), \
        f'mask margin {margin} too small: choose other input frames'
    assert torch.isfinite(ref['video_feature']).all()


# ---------------------------------------------------------------------------
# 1. the re-derivation reproduces the official golden data
# ---------------------------------------------------------------------------
def _check_golden(parity_dir, weights, mode, T, B, f64):
    dtype = torch.float64 if f64 else torch.float32
    inputs = torch.load(osp.join(parity_dir, f'inputs_T{T}_B{B}.pt'))
    suffix = '_f64' if f64 else ''
    expected = torch.load(
        osp.join(parity_dir, f'expected_{mode}_T{T}_B{B}{suffix}.pt'))
    sd = full_state_dict(weights, T, mode)
    assert weights.state_dict_digest(sd) == expected['meta']['weights_digest']
    with torch.no_grad():
        ref = official_forward(sd, weights.load_frames(inputs, dtype),
                               inputs['text_ids'], T, mode)
    for key, step in (('prompted_pixels_s4', 4), ('prompted_pixels_s8', 8)):
        ref[key] = ref['prompted_pixels'][..., ::step, ::step]
    keys = [k for k in expected if k not in ('meta', 'mask')]
    assert {
        'w', 'inter_prompt', 'TP', 'vis_global_layers', 'txt_eot_layers',
        'video_feature', 'text_feature', 'sim'
    } <= set(keys)
    assert_same(ref, expected, f64, keys)
    return ref, inputs


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['transformer', 'linear'])
def test_reference_matches_golden_T4_B2(stop_parity_dir, stop_weights, mode):
    ref, inputs = _check_golden(stop_parity_dir, stop_weights, mode, 4, 2,
                                False)
    if mode == 'transformer':  # full-size stages A-C (mode independent)
        stages = torch.load(
            osp.join(stop_parity_dir, 'expected_stop_T4_B2.pt'))
        ref['prompted_pixels_v0'] = ref['prompted_pixels'][:4]
        assert_same(ref, stages, False, [
            'prompted_pixels_v0', 'h0', 'inter_attn', 'mask_pooled', 'w_raw',
            'w', 'inter_prompt'
        ])


@pytest.mark.slow
@pytest.mark.parametrize(
    'mode,T,B,f64',
    [
        ('transformer', 4, 2, True),  # float64 Conv3d by 2D taps: ~1-3 min
        ('transformer', 12, 3, False),
        ('linear', 12, 3, False)
    ])
def test_reference_matches_golden_slow(stop_parity_dir, stop_weights, mode, T,
                                       B, f64):
    _check_golden(stop_parity_dir, stop_weights, mode, T, B, f64)


# ---------------------------------------------------------------------------
# 2. mmstop == re-derivation at configurations without golden data
# ---------------------------------------------------------------------------
_LAST = {}


def _compare(parity_dir, weights, mode, T, B, f64, small):
    dtype = torch.float64 if f64 else torch.float32
    if small:
        sd = small_state_dict(weights, T, mode)
        arch = SMALL_ARCH
        heads = (SMALL_ARCH['vision_heads'], SMALL_ARCH['text_heads'])
        frames, ids = make_inputs(weights, parity_dir, T, B, SMALL['image'],
                                  dtype)
    else:
        sd = full_state_dict(weights, T, mode)
        arch, heads = 'vit-b32', (12, 8)
        frames, ids = make_inputs(weights, parity_dir, T, B, 224, dtype)
    with torch.no_grad():
        ref = official_forward(sd, frames, ids, T, mode, *heads)
    assert_decisive(ref, f64)
    model = build_mmstop(sd, T, mode, arch, dtype)
    out = official_layout_forward(model, frames, ids)
    assert_same(out, ref, f64)
    _LAST.clear()  # keep one run (a full-size model is 0.6 GB)
    _LAST[(mode, T, B, f64, small)] = (model, sd, frames, ids, ref, out)
    return model, sd, frames, ids, ref, out


def _compare_cached(parity_dir, weights, mode, T, B, f64, small):
    key = (mode, T, B, f64, small)
    if key in _LAST:
        return _LAST[key]
    return _compare(parity_dir, weights, mode, T, B, f64, small)


# transformer-T2-B3 last: test_batch_coupling_matches_official reuses it
@pytest.mark.slow
@pytest.mark.parametrize('mode,T,B', [('linear', 1, 3), ('linear', 3, 2),
                                      ('transformer', 2, 3)])
def test_full_size_float32(stop_parity_dir, stop_weights, mode, T, B):
    _compare(stop_parity_dir, stop_weights, mode, T, B, False, small=False)


# full-f32 first: it reuses the last test_full_size_float32 run
@pytest.mark.parametrize('small', [
    pytest.param(False, id='full-f32', marks=pytest.mark.slow),
    pytest.param(True, id='reduced-f64')
])
def test_batch_coupling_matches_official(stop_parity_dir, stop_weights, small):
    """A video's feature depends on its batch (w is min-max normalised over
    all B*T frames), identically in mmstop and in the official forward."""
    mode, T, B = 'transformer', 2, 3
    f64 = small
    tol = STOP_TOL64 if f64 else STOP_TOL32['video_feature']
    model, sd, frames, ids, ref, out = _compare_cached(stop_parity_dir,
                                                       stop_weights, mode, T,
                                                       B, f64, small)
    heads = ((SMALL_ARCH['vision_heads'],
              SMALL_ARCH['text_heads']) if small else (12, 8))
    videos = frames.reshape(B, T, *frames.shape[1:])
    # drop the video that holds the batch maximum of w_raw: the normalisation
    # of the remaining videos changes
    top = int(ref['w_raw'].max(dim=1)[0].argmax())
    subsets = [[b for b in range(B) if b != top]]
    if small:  # a reordered batch: features are only reordered
        subsets.append([2, 0, 1])
    for keep in subsets:
        sub_frames = videos[keep].flatten(0, 1)
        with torch.no_grad():
            ref_sub = official_forward(sd, sub_frames, ids[keep], T, mode,
                                       *heads)
        out_sub = official_layout_forward(model, sub_frames, ids[keep])
        assert_same(out_sub, ref_sub, f64)
        change = ref_sub['video_feature'] - ref['video_feature'][keep]
        if len(keep) < B:  # the coupling is real ...
            assert change.abs().max() > 100 * tol
        else:
            assert change.abs().max() < tol
        # ... and mmstop's features move exactly as the official ones do
        torch.testing.assert_close(
            out_sub['video_feature'] - out['video_feature'][keep],
            change,
            rtol=0,
            atol=tol if f64 else 2 * tol)
        # the text tower does not depend on the batch
        torch.testing.assert_close(
            out_sub['text_feature'],
            out['text_feature'][keep],
            rtol=0,
            atol=STOP_TOL64 if f64 else STOP_TOL32['text_feature'])


@pytest.mark.slow
@pytest.mark.parametrize('mode,T,B', [('transformer', 1, 3), ('linear', 2, 3),
                                      ('transformer', 3, 2),
                                      ('transformer', 2, 5), ('linear', 2, 5),
                                      ('transformer', 7, 1), ('linear', 7, 1)])
def test_full_size_float32_slow(stop_parity_dir, stop_weights, mode, T, B):
    _compare(stop_parity_dir, stop_weights, mode, T, B, False, small=False)


@pytest.mark.slow
@pytest.mark.parametrize('mode,T,B', [('transformer', 1, 2), ('linear', 2, 1)])
def test_full_size_float64_slow(stop_parity_dir, stop_weights, mode, T, B):
    _compare(stop_parity_dir, stop_weights, mode, T, B, True, small=False)


SMALL_CONFIGS = [('transformer', 1, 2),
                 ('linear', 1, 3), ('transformer', 2, 5), ('linear', 3, 2),
                 ('transformer', 7, 1), ('linear', 4, 2)]
SMALL_CONFIGS_MORE = [('linear', 1, 2),
                      ('transformer', 1, 3), ('linear', 2, 5),
                      ('transformer', 3, 2), ('linear', 7, 1),
                      ('transformer', 4, 2), ('linear', 2, 3),
                      ('transformer', 5, 3), ('linear', 5, 3)]


@pytest.mark.parametrize(
    'mode,T,B',
    SMALL_CONFIGS,
    ids=[f'{m}-T{T}-B{B}' for m, T, B in SMALL_CONFIGS])
def test_reduced_size_float64(stop_parity_dir, stop_weights, mode, T, B):
    """Layout/ordering at many (T, B): reduced sizes, not the official ones."""
    _compare(stop_parity_dir, stop_weights, mode, T, B, True, small=True)


@pytest.mark.parametrize(
    'mode,T,B',
    SMALL_CONFIGS_MORE,
    ids=[f'{m}-T{T}-B{B}' for m, T, B in SMALL_CONFIGS_MORE])
def test_reduced_size_float64_more(stop_parity_dir, stop_weights, mode, T, B):
    _compare(stop_parity_dir, stop_weights, mode, T, B, True, small=True)


@pytest.mark.parametrize('pool', ['mean_global', 'mean_cls'])
def test_other_poolings_average_the_projected_tokens(stop_parity_dir,
                                                     stop_weights, pool):
    """``pool='mean_global'`` / ``'mean_cls'`` (not official) average the
    last layer's global tokens / frame CLS tokens after ``ln_post`` and
    ``proj``, here taken from the re-derivation's token sequence (the
    official first global token is compared above)."""
    mode, T, B = 'linear', 3, 2
    sd = small_state_dict(stop_weights, T, mode)
    frames, ids = make_inputs(stop_weights, stop_parity_dir, T, B,
                              SMALL['image'], torch.float64)
    with torch.no_grad():
        ref = official_forward(sd, frames, ids, T, mode,
                               SMALL_ARCH['vision_heads'],
                               SMALL_ARCH['text_heads'])
    model = build_mmstop(sd, T, mode, SMALL_ARCH, torch.float64, pool=pool)
    out = official_layout_forward(model, frames, ids)
    # sequence [4 global ; frame tokens], CLS of frame t at 4 + t
    tokens = ref['visual_tokens']
    tokens = (
        tokens[:, :N_GLOBAL]
        if pool == 'mean_global' else tokens[:, N_GLOBAL:N_GLOBAL + T])
    torch.testing.assert_close(
        out['video_feature'], tokens.mean(1), rtol=0, atol=STOP_TOL64)
    assert (out['video_feature'] - ref['video_feature']).abs().max() > 1e-3


# ---------------------------------------------------------------------------
# 3. the degenerate single-frame batch
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('small', [
    pytest.param(True, id='reduced-f64'),
    pytest.param(False, id='full-f32', marks=pytest.mark.slow)
])
def test_single_frame_batch_is_nan_officially_and_an_error_here(
        stop_parity_dir, stop_weights, small):
    """T=1, B=1: the official batch min-max divides 0 by 0, so w, the inter
    prompts and every video feature are NaN
    (docs/stop.md#batch-coupling-and-single-frame-batches); the
    text tower is unaffected. mmstop's official mode refuses that batch
    before the forward, naming the per-video normalisation as the fix."""
    mode, T, B = 'transformer', 1, 1
    f64 = small
    dtype = torch.float64 if f64 else torch.float32
    if small:
        sd = small_state_dict(stop_weights, T, mode)
        heads = (SMALL_ARCH['vision_heads'], SMALL_ARCH['text_heads'])
        arch, size = SMALL_ARCH, SMALL['image']
    else:
        sd = full_state_dict(stop_weights, T, mode)
        arch, heads, size = 'vit-b32', (12, 8), 224
    frames, ids = make_inputs(stop_weights, stop_parity_dir, T, B, size, dtype)
    with torch.no_grad():
        ref = official_forward(sd, frames, ids, T, mode, *heads)
    assert torch.isnan(ref['w']).all()
    assert torch.isnan(ref['inter_prompt']).all()
    assert torch.isnan(ref['video_feature']).all()
    assert torch.isnan(ref['sim']).all()
    assert torch.isfinite(ref['text_feature']).all()
    with pytest.raises(ValueError, match=r"normalize='video'"):
        official_layout_forward(
            build_mmstop(sd, T, mode, arch, dtype), frames, ids)
