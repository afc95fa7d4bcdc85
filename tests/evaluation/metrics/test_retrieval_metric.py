# Copyright (c) mmstop contributors. All rights reserved.
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from mmstop.evaluation import retrieval_metrics
from mmstop.evaluation.metrics import VideoTextRetrievalMetric
from mmstop.registry import METRICS


def _features(seed=0, counts=(2, 1, 3, 1), dim=8):
    """Random video features and noisy caption features near their video."""
    g = torch.Generator().manual_seed(seed)
    videos = torch.randn(len(counts), dim, generator=g)
    texts = [
        videos[v] + 1.5 * torch.randn(n, dim, generator=g)
        for v, n in enumerate(counts)
    ]
    return videos, texts


def _samples(videos, texts, order=None):
    out = []
    for i in (range(len(videos)) if order is None else order):
        ds = ActionDataSample()
        ds.set_metainfo(dict(sample_idx=i, video_index=i))
        ds.set_field(videos[i], 'video_feature')
        ds.set_field(texts[i], 'text_feature')
        out.append(ds)
    return out


def _expected(videos, texts, **kwargs):
    t = torch.cat(texts)
    t = t / t.norm(dim=-1, keepdim=True)
    v = videos / videos.norm(dim=-1, keepdim=True)
    t2v = np.repeat(np.arange(len(texts)), [len(x) for x in texts])
    return retrieval_metrics((t @ v.T).numpy(), t2v, **kwargs)


def test_metric_multi_caption_matches_function():
    videos, texts = _features()
    metric = METRICS.build(dict(type='VideoTextRetrievalMetric'))
    metric.process(None, _samples(videos, texts)[:2])
    metric.process(None, [s.to_dict() for s in _samples(videos, texts)[2:]])
    out = metric.evaluate(4)
    exp = _expected(videos, texts)
    assert set(out) == {'retrieval/' + k for k in exp}
    for k, v in exp.items():
        assert out['retrieval/' + k] == pytest.approx(v)


def test_metric_restores_dataset_order():
    """Results gathered out of order (ranks interleave) give the same sim."""
    videos, texts = _features(seed=1, counts=(1, 4, 2, 2, 1))
    ref = VideoTextRetrievalMetric()
    ref.process(None, _samples(videos, texts))
    shuffled = VideoTextRetrievalMetric()
    order = [3, 0, 4, 2, 1]
    shuffled.process(None, _samples(videos, texts, order))
    assert shuffled.evaluate(5) == ref.evaluate(5)
    # without sample_idx, order would matter: the caption->video mapping is
    # rebuilt from the sample order, so the samples must carry sample_idx
    t, v, t2v = VideoTextRetrievalMetric.assemble([
        dict(
            video_feature=videos[i].numpy(),
            text_feature=texts[i].numpy(),
            sample_idx=i,
            video_index=None) for i in order
    ])
    assert t2v.tolist() == [0, 1, 1, 1, 1, 2, 2, 3, 3, 4]
    np.testing.assert_array_equal(v, videos.numpy())


def test_metric_merges_samples_of_one_video():
    """caption_mode='unfold' at test: one sample per caption, same video."""
    videos, texts = _features(seed=2, counts=(2, 1, 2))
    samples = []
    idx = 0
    for v, caps in enumerate(texts):
        for row in caps:
            samples.append(
                dict(
                    sample_idx=idx,
                    video_index=10 + v,
                    video_feature=videos[v],
                    text_feature=row))
            idx += 1
    metric = VideoTextRetrievalMetric(prefix='r')
    random.Random(0).shuffle(samples)
    metric.process(None, samples)
    out = metric.evaluate(len(samples))
    exp = _expected(videos, texts)
    for k, v in exp.items():
        assert out['r/' + k] == pytest.approx(v)


def test_metric_duplicates_dropped_and_features_key():
    videos, texts = _features(seed=3, counts=(1, 1, 1))
    samples = [
        dict(
            sample_idx=i,
            features=dict(video_feature=videos[i], text_feature=texts[i][0]))
        for i in range(3)
    ]
    metric = VideoTextRetrievalMetric()
    metric.process(None, samples + samples[:1])  # a padded duplicate
    out = metric.compute_metrics(metric.results)
    exp = _expected(videos, texts)
    for k, v in exp.items():
        assert out[k] == pytest.approx(v)


def test_metric_options_forwarded():
    videos, texts = _features(seed=4, counts=(3, 1, 2, 2))
    for kwargs in (dict(dsl=True,
                        dsl_temperature=50.0), dict(v2t_mode='group'),
                   dict(ties='optimistic'), dict(ks=(1, 2))):
        metric = VideoTextRetrievalMetric(**kwargs)
        metric.process(None, _samples(videos, texts))
        out = metric.compute_metrics(metric.results)
        assert out == pytest.approx(_expected(videos, texts, **kwargs))


def test_metric_bad_input():
    metric = VideoTextRetrievalMetric()
    with pytest.raises(KeyError, match='video_feature'):
        metric.process(None, [dict(sample_idx=0, text_feature=torch.ones(2))])
    with pytest.raises(ValueError, match='text_feature'):
        metric.process(None, [
            dict(
                sample_idx=0,
                video_feature=torch.ones(4),
                text_feature=torch.ones(2, 3))
        ])
    with pytest.raises(ValueError, match='ties'):
        VideoTextRetrievalMetric(ties='x')
    # a zero feature gives NaN cosine similarity: clear error, not a number
    metric = VideoTextRetrievalMetric()
    metric.process(None, [
        dict(
            sample_idx=0,
            video_feature=torch.zeros(4),
            text_feature=torch.ones(1, 4)),
        dict(
            sample_idx=1,
            video_feature=torch.ones(4),
            text_feature=torch.ones(1, 4)),
    ])
    with pytest.raises(ValueError, match='NaN'):
        metric.compute_metrics(metric.results)


def _dist_worker(rank, world, port, tmpdir):
    import torch.distributed as dist

    # MMEngine gathers the results through a '.dist_test' directory in the
    # working directory: the test's, not the repository
    os.chdir(tmpdir)
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world)
    videos, texts = _features(seed=5, counts=(2, 1, 3, 1, 2))
    n = len(videos)
    # DefaultSampler(shuffle=False) with 2 ranks: rank r gets r, r+2, ...;
    # rank 1 is padded with sample 0 to equal length
    mine = list(range(rank, n, world))
    if rank == 1:
        mine.append(0)
    metric = VideoTextRetrievalMetric()
    metric.process(None, _samples(videos, texts, mine))
    out = metric.evaluate(n)
    torch.save(out, osp.join(tmpdir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def test_metric_distributed_gather(tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    # fork: the workers reuse this process's imports (spawn re-imports
    # mmaction and takes ~30 s on 2 cores)
    mp.start_processes(
        _dist_worker,
        args=(2, port, str(tmp_path)),
        nprocs=2,
        start_method='fork')
    videos, texts = _features(seed=5, counts=(2, 1, 3, 1, 2))
    exp = _expected(videos, texts)
    for rank in range(2):
        out = torch.load(tmp_path / f'rank{rank}.pt')
        for k, v in exp.items():
            assert out['retrieval/' + k] == pytest.approx(v)
