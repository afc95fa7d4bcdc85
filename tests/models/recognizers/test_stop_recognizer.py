# Copyright (c) mmstop contributors. All rights reserved.
"""STOPRecognizer: text-encoder classifier, caching, frozen set, multi-view."""
import pytest
import torch
from helpers import TINY_FRAMES, TINY_WIDTH, build_model, tiny_stop_backbone
from mmaction.structures import ActionDataSample

NUM_FRAMES = TINY_FRAMES
CLASSES = ['moving up', 'moving down', 'growing']


class AuxLossNeck(torch.nn.Module):
    """A neck that scales the features and, in training, returns a loss."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.))

    def forward(self, x, data_samples=None):
        return x * self.scale, dict(loss_neck=(self.scale - 1).abs())


def tiny_recognizer(neck=None, **head):
    return build_model(
        dict(
            neck=neck,
            type='STOPRecognizer',
            backbone=tiny_stop_backbone(inter_prompt=dict(normalize='video')),
            cls_head=dict(
                type='TextClassifierHead',
                class_names=CLASSES,
                in_channels=TINY_WIDTH,
                **head),
            data_preprocessor=dict(
                type='ActionDataPreprocessor', format_shape='NCTHW')))


def samples(n):
    return [
        ActionDataSample().set_gt_label(torch.tensor(i % len(CLASSES)))
        for i in range(n)
    ]


def clips(n, views=1):
    torch.manual_seed(1)
    return torch.randn(n, views, 3, NUM_FRAMES, 32, 32)


def test_loss_trains_only_prompts_and_adapters():
    model = tiny_recognizer()
    model.train()
    losses = model.loss(clips(2), samples(2))
    assert set(losses) >= {'loss_cls', 'top1_acc'}
    losses['loss_cls'].backward()
    for name, p in model.named_parameters():
        frozen = name.startswith('backbone.clip.')
        assert p.requires_grad is not frozen, name
        if frozen:
            assert p.grad is None, name
    grads = {
        n
        for n, p in model.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }
    # the text side trains through the class embeddings
    assert any(n.startswith('backbone.text_adapters.') for n in grads)
    assert any(n.startswith('backbone.prompt_generator.') for n in grads)
    assert any(n.startswith('backbone.intra_prompt.generator') for n in grads)


def test_logits_are_cosine_over_temperature():
    model = tiny_recognizer(tau=0.05)
    model.eval()
    with torch.no_grad():
        x = clips(2)
        logits = model._forward(x, stage='head')
        v = model.backbone(x[:, 0])
        s = model.backbone.encode_text(model.cls_head.class_token_ids)
    cos = torch.nn.functional.normalize(v, dim=-1) @ \
        torch.nn.functional.normalize(s, dim=-1).t()
    torch.testing.assert_close(logits, cos / 0.05)
    # default temperature: the frozen CLIP scale (ln 100 -> tau 0.01)
    assert tiny_recognizer().backbone.logit_scale.exp().item() == \
        pytest.approx(100.0)


def test_class_embeddings_recomputed_in_training_cached_in_eval(monkeypatch):
    model = tiny_recognizer()
    calls = []
    original = model.backbone.encode_text

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model.backbone, 'encode_text', counting)
    model.train()
    model.loss(clips(2), samples(2))
    model.loss(clips(2), samples(2))
    assert len(calls) == 2  # every training step
    model.eval()
    with torch.no_grad():
        first = model.predict(clips(2), samples(2))
        second = model.predict(clips(2), samples(2))
    assert len(calls) == 3  # once for evaluation
    torch.testing.assert_close(first[0].pred_score, second[0].pred_score)
    # new weights invalidate the cache
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state['backbone.text_adapters.0.up.bias'] += 1.0
    model.load_state_dict(state)
    with torch.no_grad():
        third = model.predict(clips(2), samples(2))
    assert len(calls) == 4
    assert not torch.allclose(first[0].pred_score, third[0].pred_score)
    model.train()
    assert model._class_cache is None


def test_multi_view_prediction_averages_probabilities():
    model = tiny_recognizer(average_clips='prob')
    model.eval()
    x = clips(2, views=3)
    with torch.no_grad():
        preds = model.predict(x, samples(2))
        per_view = model._forward(x.flatten(0, 1)[:, None], stage='head')
    expected = per_view.softmax(-1).view(2, 3, -1).mean(1)
    for pred, exp in zip(preds, expected):
        torch.testing.assert_close(pred.pred_score, exp)
        assert pred.pred_label.item() == exp.argmax().item()


def test_neck_output_and_aux_loss_reach_the_head():
    """MMAction2's BaseRecognizer contract: the head scores the neck's
    features and the neck's loss_aux is part of the losses."""
    model = tiny_recognizer(neck=dict(type=AuxLossNeck))
    model.train()
    losses = model.loss(clips(2), samples(2))
    assert losses['loss_neck'].item() == pytest.approx(1.0)
    losses['loss_neck'].backward()
    assert model.neck.scale.grad is not None
    model.eval()
    with torch.no_grad():
        x = clips(2)
        v = model.backbone(x[:, 0]) * 2.
        s = model.backbone.encode_text(model.cls_head.class_token_ids)
        cos = torch.nn.functional.normalize(v, dim=-1) @ \
            torch.nn.functional.normalize(s, dim=-1).t()
        torch.testing.assert_close(model._forward(x, stage='head'), 100 * cos)
        pred = model.predict(x, samples(2))
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in pred]), (100 * cos).softmax(-1))


def test_backbone_stage_does_not_encode_the_classes(monkeypatch):
    model = tiny_recognizer()
    model.train()
    monkeypatch.setattr(model.backbone, 'encode_text', None)  # not called
    feats = model._forward(clips(2), stage='backbone')
    assert feats.shape == (2, 64)
