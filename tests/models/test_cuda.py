# Copyright (c) mmstop contributors. All rights reserved.
"""The GPU path: CUDA results equal CPU results, scans agree, AMP trains.

Skipped (with the reason) without CUDA. ``tools/analysis/gpu_check.py``
runs this file, the Triton checks and the golden parity tests on a GPU.

(a) Official-mode STOP (CLIP ViT-B/32, 4 frames, 224 px) and VideoMamba-M +
SSP (64 px, 4 frames) on CUDA (fp32, TF32 off) against the same models and
weights on the CPU, with the golden-data tolerances of the parity tests
(the CPU path is proved against the official code there). The weights are
random and perturbed, so every prompt module contributes.
(b) Scan implementations on CUDA: Triton (and mamba_ssm when importable)
against the sequential reference in float64, forward and every gradient,
at a small size and at VideoMamba-M's (E = 1152, L = 1593, S = 16).
(c) One training step of the demo models under CUDA autocast: fp16 (the
official STOP precision) and bf16 for STOP, bf16 for SSP.
"""
import pytest
import torch
from helpers import REL_TOL, STOP_TOL32, assert_rel_close, ssp_recognizer
from helpers.amp import build, check_step, clips, labelled
from helpers.scan import forward_backward, make_inputs

from mmstop.models.backbones import STOPCLIP
from mmstop.models.ops import selective_scan

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason='needs a CUDA GPU (tools/analysis/gpu_check.py runs it)')
]


@pytest.fixture(scope='module', autouse=True)
def exact_fp32():
    """TF32 off: CUDA fp32 must compare with CPU fp32."""
    old = (torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = old


def perturb(model, scale=0.02, seed=0):
    """Add noise to every tensor, so zero-initialised prompts act too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def test_stop_official_cuda_matches_cpu():
    torch.manual_seed(0)
    model = perturb(STOPCLIP(arch='vit-b32', num_frames=4)).eval()
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 4, 3, 224, 224, generator=g)
    token_ids = torch.zeros(3, 77, dtype=torch.long)
    token_ids[:, 0] = 49406  # SOT, random words, EOT
    token_ids[:, 1:6] = torch.randint(300, 40000, (3, 5), generator=g)
    token_ids[:, 6] = 49407
    outs = []
    for device in ('cpu', 'cuda'):
        with torch.no_grad():
            out = model.to(device)(
                frames.transpose(1, 2).to(device),
                token_ids.to(device),
                return_intermediates=True)[2]
        outs.append({k: v.cpu() for k, v in out.items()})
    cpu, cuda = outs
    assert torch.equal(cpu['mask'], cuda['mask'])
    compared = 0
    for key, tol in STOP_TOL32.items():
        if key in cpu and not key.startswith('prompted_pixels'):
            torch.testing.assert_close(
                cuda[key],
                cpu[key],
                rtol=0,
                atol=tol,
                msg=lambda m, k=key: f'{k}: '
                f'{m}')
            compared += 1
    assert compared >= 10
    assert cpu['video_feature'].std() > 0


def test_ssp_official_cuda_matches_cpu():
    torch.manual_seed(0)
    model = perturb(ssp_recognizer('middle', 64, 4, 10, ssp=dict()))
    model.eval()
    video = torch.randn(
        2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    outs = []
    for device in ('cpu', 'cuda'):  # scan: 'fast' on CPU, 'auto' on CUDA
        model.to(device)
        with torch.no_grad():
            feats, _ = model.extract_feat(
                video[:, None].to(device), test_mode=True)
            outs.append((feats.cpu(), model.cls_head(feats).cpu()))
    pairs = (('features', outs[0][0]), ('logits', outs[0][1]))
    for (name, cpu), cuda in zip(pairs, outs[1]):
        assert_rel_close(cuda, cpu, rel=REL_TOL, what=name)


SCAN_SIZES = [(2, 64, 100, 16), (2, 1152, 1593, 16)]


@pytest.mark.parametrize(
    'size', SCAN_SIZES, ids=lambda s: 'x'.join(map(str, s)))
def test_scan_implementations_agree(size):
    from mmstop.models.ops.selective_scan import _mamba_ssm_scan_fn
    impls = ['triton'] + (['mamba_ssm'] if _mamba_ssm_scan_fn() else [])
    inputs = make_inputs(*size)
    g = torch.Generator().manual_seed(3)
    g_out = torch.randn(*size[:3], generator=g)

    def run(impl, dtype):
        return forward_backward(
            lambda **kw: selective_scan(**kw, impl=impl), {
                k: v.to('cuda', dtype)
                for k, v in inputs.items()
            },
            g_out.to('cuda', dtype),
            delta_softplus=True)

    ref_out, _, ref_grads = run('reference', torch.float64)
    for impl in impls:
        out, _, grads = run(impl, torch.float32)
        assert_rel_close(out, ref_out, rel=2e-5, what=f'{impl} out')
        for name, ref in ref_grads.items():
            assert_rel_close(
                grads[name], ref, rel=2e-5, what=f'{impl} d{name}')


@pytest.mark.parametrize('config, dtype, mode', [
    ('stop_clip_demo.py', torch.float16, 'official'),
    ('stop_clip_demo.py', torch.bfloat16, 'official'),
    ('stop_clip_demo.py', torch.bfloat16, 'paper'),
    ('ssp_videomamba_demo.py', torch.bfloat16, None),
])
def test_amp_training_step(config, dtype, mode):
    prompts = dict(
        intra_prompt=dict(mode='paper'), inter_prompt=dict(
            mode='paper')) if mode == 'paper' else {}
    model = build(config, **prompts)
    check_step(model, clips(model, 2), labelled(2), dtype, device='cuda')
