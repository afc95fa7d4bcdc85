# Copyright (c) mmstop contributors. All rights reserved.
"""Mixed precision: the demo models' training step under autocast.

``tools/train.py --amp`` runs the forward under ``torch.autocast`` (fp16 by
default, as the official STOP code; bf16 for SSP's recipe). CPU autocast
follows the same rules for the ops involved, so these tests catch dtype
mix-ups without a GPU; ``tools/analysis/gpu_check.py`` repeats the training
step on CUDA.
"""
import pytest
import torch
from helpers.amp import CLASSES, build, check_step, clips, labelled

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('mode', ['official', 'paper'])
def test_stop_recognition(dtype, mode):
    prompts = {} if mode == 'official' else dict(
        intra_prompt=dict(mode='paper'), inter_prompt=dict(mode='paper'))
    model = build('stop_clip_demo.py', **prompts)
    losses = check_step(model, clips(model, 2), labelled(2), dtype)
    # MMAction2's head logs a top-1 computed with numpy (no bf16 there)
    assert 'top1_acc' in losses
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        scores = model.predict(clips(model, 2), labelled(2))
    assert scores[0].pred_score.dtype == torch.float32


def test_text_classifier_logits_stay_fp32():
    """Cosines times 1/tau = 100: bf16 would resolve steps of 0.5."""
    model = build('stop_clip_demo.py')
    head = model.cls_head
    x = torch.randn(3, 64)
    emb = torch.randn(len(CLASSES), 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits = head(x, class_embeddings=emb, logit_scale=torch.tensor(4.6))
    assert logits.dtype == torch.float32
    expected = torch.tensor(4.6).exp() * (
        torch.nn.functional.normalize(x, dim=-1)
        @ torch.nn.functional.normalize(emb, dim=-1).t())
    torch.testing.assert_close(logits, expected)


def test_ssp_recognition_bf16():
    model = build('ssp_videomamba_demo.py')
    losses = check_step(model, clips(model, 2), labelled(2), torch.bfloat16)
    assert 'top1_acc' in losses


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_stop_retrieval(dtype):
    from mmstop.models.similarity.stop_similarity import symmetric_info_nce
    text, video = torch.randn(4, 8), torch.randn(4, 8)
    ref = symmetric_info_nce(text, video, 4.6)
    with torch.autocast('cpu', dtype=dtype):
        got = symmetric_info_nce(text, video, torch.tensor(4.6))
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b)
