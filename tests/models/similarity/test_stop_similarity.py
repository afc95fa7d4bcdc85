# Copyright (c) mmstop contributors. All rights reserved.
"""STOPSimilarity: the loss (hand-computed), predict contract, tensor mode,
evaluation log, single-process gather. Multi-process gather and DDP
gradients: test_stop_similarity_ddp.py."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_FRAMES, TINY_IMAGE, tiny_stop_similarity
from mmaction.structures import ActionDataSample
from mmengine.logging import MMLogger

from mmstop.models.similarity import gather_features, symmetric_info_nce

NUM_FRAMES, IMAGE = TINY_FRAMES, TINY_IMAGE
CONTEXT = 16

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_similarity(**kwargs):
    return tiny_stop_similarity(intra_prompt=dict(dropout=0.), **kwargs)


def frames(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, NUM_FRAMES, 3, IMAGE, IMAGE, generator=g)


def token_ids(n, seed=2):
    """``n`` rows of SOT, 3..8 random BPE ids, EOT, zero padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, CONTEXT, dtype=torch.long)
    for i in range(n):
        k = int(torch.randint(3, 9, (1, ), generator=g))
        ids[i, 0] = 49406
        ids[i, 1:1 + k] = torch.randint(1, 49000, (k, ), generator=g)
        ids[i, 1 + k] = 49407
    return ids


def samples(counts, seed=2):
    ids = token_ids(sum(counts), seed).split(list(counts))
    out = []
    for i, t in enumerate(ids):
        ds = ActionDataSample()
        ds.set_field(t, 'text_ids', dtype=torch.Tensor)
        ds.set_metainfo(dict(sample_idx=i, video_index=i))
        out.append(ds)
    return out


# ---------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------
def test_info_nce_hand_computed():
    # scale 1 (logit_scale 0): S = t_hat v_hat^T = [[1, a], [0, a]]
    a = 1 / math.sqrt(2)
    text = torch.tensor([[2., 0.], [0., 3.]])  # norms do not matter
    video = torch.tensor([[1., 0.], [1., 1.]])
    t2v, v2t = symmetric_info_nce(text, video, 0.)
    e = math.exp
    # rows of S: [1, a] (target 0) and [0, a] (target 1)
    want_t2v = (-math.log(e(1) / (e(1) + e(a))) - math.log(e(a) /
                                                           (1 + e(a)))) / 2
    # rows of S^T: [1, 0] (target 0) and [a, a] (target 1)
    want_v2t = (-math.log(e(1) / (e(1) + 1)) + math.log(2)) / 2
    assert t2v.item() == pytest.approx(want_t2v, rel=1e-6)
    assert v2t.item() == pytest.approx(want_v2t, rel=1e-6)


def test_info_nce_scale_is_exp_logit_scale():
    # identical features: every row is uniform whatever the scale, ln N
    same = torch.ones(5, 3)
    for half in symmetric_info_nce(same, same, math.log(100.)):
        assert half.item() == pytest.approx(math.log(5), rel=1e-6)
    # two orthogonal pairs at scale 100: CE = log(1 + e^-100) ~ e^-100
    eye = torch.eye(2)
    t2v, _ = symmetric_info_nce(eye, eye, math.log(100.))
    assert t2v.item() < 1e-30
    # at scale 1 the same pairs give log(1 + e^-1)
    t2v, v2t = symmetric_info_nce(eye, eye, 0.)
    assert t2v.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert v2t.item() == pytest.approx(t2v.item())
    with pytest.raises(ValueError, match=r'\[N, D\]'):
        symmetric_info_nce(torch.ones(3, 2), torch.ones(2, 2), 0.)


def test_loss_matches_manual_formula_and_trains_only_prompts():
    model = tiny_similarity()
    model.train()
    x, ds = frames(3), samples([1, 1, 1])
    losses = model.loss(x, ds)
    assert set(losses) == {'loss_sim', 'global_batch'}
    assert losses['global_batch'].item() == 3
    # manual: S = 100 cos(t_i, v_j), rows = captions
    with torch.no_grad():
        v = model.backbone.encode_video(x)
        t = model.backbone.encode_text(torch.cat([d.text_ids for d in ds]))
    assert model.backbone.logit_scale.exp().item() == pytest.approx(100.)
    assert not model.backbone.logit_scale.requires_grad
    sim = 100. * F.normalize(t, dim=-1) @ F.normalize(v, dim=-1).t()
    want = -(sim.log_softmax(1).diagonal().mean() +
             sim.log_softmax(0).diagonal().mean()) / 2
    torch.testing.assert_close(
        losses['loss_sim'].detach(), want, rtol=1e-5, atol=1e-6)
    losses['loss_sim'].backward()
    with_grad = set()
    for name, p in model.named_parameters():
        frozen = name.startswith('backbone.clip.')
        assert p.requires_grad is not frozen, name
        if frozen:
            assert p.grad is None, name
        elif p.grad is not None and p.grad.abs().sum() > 0:
            with_grad.add(name.split('.')[1])
    # both towers' trainable parts learn from the contrastive loss
    assert {
        'text_adapters', 'visual_adapters', 'prompt_generator', 'inter_prompt',
        'intra_prompt', 'global_prompts'
    } <= with_grad


def test_loss_rejects_several_captions_per_training_sample():
    model = tiny_similarity()
    with pytest.raises(ValueError, match='exactly one caption'):
        model.loss(frames(2), samples([1, 2]))


def test_forward_modes_and_bad_inputs():
    model = tiny_similarity()
    model.eval()
    x = frames(2)
    with torch.no_grad():
        video, text = model(x, samples([1, 2]), mode='tensor')
        assert video.shape == (2, 64) and text.shape == (3, 64)
        video_only, none = model(x, mode='tensor')
    assert none is None
    torch.testing.assert_close(video_only, video)
    with pytest.raises(RuntimeError, match='Invalid mode'):
        model(x, samples([1, 1]), mode='features')
    with pytest.raises(KeyError, match='text_ids'):
        model.predict(x, [ActionDataSample(), ActionDataSample()])
    with pytest.raises(ValueError, match='2 videos but 3 data samples'):
        model.predict(x, samples([1, 1, 1]))
    with pytest.raises(ValueError, match='gather_grad'):
        tiny_similarity(gather_grad='sum')


# ---------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------
def test_predict_contract_multi_caption(monkeypatch):
    model = tiny_similarity()
    model.eval()
    x, ds = frames(3), samples([1, 3, 2])
    generator = model.backbone.prompt_generator
    calls = []
    original = generator.forward

    def counting():
        calls.append(1)
        return original()

    monkeypatch.setattr(generator, 'forward', counting)
    with torch.no_grad():
        out = model(x, ds, mode='predict')
    assert len(calls) == 1  # prompts computed once per batch
    assert out is ds
    with torch.no_grad():
        video = model.backbone.encode_video(x)
    for i, d in enumerate(out):
        assert d.video_feature.shape == (64, )
        assert d.text_feature.shape == (d.text_ids.shape[0], 64)
        torch.testing.assert_close(d.video_feature, video[i])
        # text features do not depend on the other captions of the batch
        with torch.no_grad():
            own = model.backbone.encode_text(d.text_ids)
        torch.testing.assert_close(d.text_feature, own, rtol=1e-5, atol=1e-6)


def test_predict_feeds_the_retrieval_metric():
    """The metric ranks the features predict() put in the data samples:
    cosine similarity of every caption with every sample's video, the
    caption's own sample holding its match."""
    from mmstop.evaluation import VideoTextRetrievalMetric, retrieval_metrics
    model = tiny_similarity()
    model.eval()
    with torch.no_grad():
        first = model.predict(frames(2, 1), samples([2, 1]))
        second = model.predict(frames(2, 3), samples([1, 1], seed=4))
    for i, d in enumerate(second):  # samples 2, 3
        d.set_metainfo(dict(sample_idx=2 + i, video_index=2 + i))
    metric = VideoTextRetrievalMetric()
    metric.process(None, first)
    metric.process(None, second)
    res = metric.evaluate(4)
    predicted = first + second
    texts = F.normalize(torch.cat([d.text_feature for d in predicted]), dim=-1)
    videos = F.normalize(
        torch.stack([d.video_feature for d in predicted]), dim=-1)
    owner = [i for i, d in enumerate(predicted) for _ in d.text_feature]
    want = retrieval_metrics(texts @ videos.t(), owner)
    assert res == {
        f'retrieval/{k}': pytest.approx(v, abs=1e-9)
        for k, v in want.items()
    }
    # not every caption ranks its video first: a wrong caption-to-video
    # assignment would change the numbers
    assert want['t2v/MnR'] > 1 and want['v2t/MnR'] > 1


def test_eval_batch_size_logged_once_per_evaluation(monkeypatch):
    model = tiny_similarity()
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'info', messages.append)
    # print_log routes through logger.log
    monkeypatch.setattr(logger, 'log',
                        lambda level, msg, *a, **k: messages.append(msg))

    def evaluation(n_batches):
        model.eval()
        with torch.no_grad():
            for _ in range(n_batches):
                model.predict(frames(2), samples([1, 1]))

    evaluation(2)
    logged = [m for m in messages if 'STOPSimilarity evaluation' in m]
    assert len(logged) == 1
    assert 'batch size 2 per process, 1 process(es)' in logged[0]
    assert 'depend on the other videos' in logged[0]  # official 'batch'
    evaluation(1)  # same evaluation (no train() in between): no new line
    assert len([m for m in messages if 'STOPSimilarity evaluation' in m]) == 1
    model.train()
    evaluation(1)
    assert len([m for m in messages if 'STOPSimilarity evaluation' in m]) == 2


def test_official_video_features_depend_on_the_batch():
    # why evaluation needs a fixed batch size: the official inter-frame
    # weights w are min-max normalised over the batch ('video': per video)
    model = tiny_similarity()
    model.eval()
    x = frames(3)

    def weights(batch):
        with torch.no_grad():
            return model.backbone.encode_video(
                batch, return_intermediates=True)[1]['w']

    assert model.batch_dependent
    assert not torch.allclose(weights(x)[:2], weights(x[:2]), atol=1e-3)
    model.backbone.inter_prompt.normalize = 'video'
    assert not model.batch_dependent
    torch.testing.assert_close(weights(x)[:2], weights(x[:2]))


# ---------------------------------------------------------------------------
# gather without a process group
# ---------------------------------------------------------------------------
def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.randn(3, 2)
    for grad in ('local', 'exact'):
        gx, gy = gather_features(x, y, grad=grad)
        assert gx is x and gy is y
    assert gather_features() == ()
    with pytest.raises(ValueError, match='same number of rows'):
        gather_features(x, torch.randn(2, 2))
    with pytest.raises(ValueError, match='grad must be one of'):
        gather_features(x, grad='mean')


def test_predict_features_do_not_share_the_batch_storage():
    # a view would pickle the whole batch's tensor with every sample
    model = tiny_similarity()
    model.eval()
    with torch.no_grad():
        out = model.predict(frames(3), samples([2, 1, 2]))
    for d in out:
        for f in (d.video_feature, d.text_feature):
            assert f.untyped_storage().nbytes() == f.numel() * 4
