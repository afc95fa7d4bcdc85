# Copyright (c) mmstop contributors. All rights reserved.
"""retrieval_metrics against rankings computed by hand (see comments)."""
import numpy as np
import pytest
import torch

from mmstop.evaluation import retrieval_metrics

# 5 captions, 3 videos; captions 0,1 -> video 0, caption 2 -> video 1,
# captions 3,4 -> video 2.
SIM = np.array(
    [
        [0.5, 0.8, 0.5],  # t0 (gt v0=.5): v1 .8 higher, v2 .5 tied
        [0.9, 0.7, 0.2],  # t1 (gt v0=.9): best
        [0.3, 0.6, 0.6],  # t2 (gt v1=.6): v2 .6 tied
        [0.4, 0.1, 0.3],  # t3 (gt v2=.3): v0 .4 higher
        [0.2, 0.65, 0.7],  # t4 (gt v2=.7): best
    ],
    dtype=np.float32)
T2V = [0, 0, 1, 2, 2]


def test_t2v_pessimistic_ties_multi_caption():
    out = retrieval_metrics(SIM, T2V, return_ranks=True)
    # ranks: t0 1+2, t1 1, t2 1+1, t3 1+1, t4 1
    assert out['t2v/ranks'].tolist() == [3, 1, 2, 2, 1]
    assert out['t2v/R@1'] == pytest.approx(40.0)
    assert out['t2v/MdR'] == pytest.approx(2.0)
    assert out['t2v/MnR'] == pytest.approx(9 / 5)
    # (3 videos: R@5 and R@10 are 100 whatever the ranks; R@2 is not)
    assert retrieval_metrics(SIM, T2V, ks=(2, ))['t2v/R@2'] == \
        pytest.approx(80.0)


def test_t2v_optimistic_ties():
    out = retrieval_metrics(SIM, T2V, ties='optimistic', return_ranks=True)
    # only strictly higher scores count: t0 1+1, t2 1
    assert out['t2v/ranks'].tolist() == [2, 1, 1, 2, 1]
    assert out['t2v/R@1'] == pytest.approx(60.0)
    assert out['t2v/MdR'] == pytest.approx(1.0)
    assert out['t2v/MnR'] == pytest.approx(7 / 5)


def test_v2t_caption_mode_best_caption_counts():
    out = retrieval_metrics(SIM, T2V, return_ranks=True)
    # v0 column [.5,.9,.3,.4,.2]: best own caption t1 .9, nothing above -> 1
    # v1 column [.8,.7,.6,.1,.65]: own t2 .6; t0 .8, t1 .7, t4 .65 above -> 4
    # v2 column [.5,.2,.6,.3,.7]: best own t4 .7, nothing above -> 1
    assert out['v2t/ranks'].tolist() == [1, 4, 1]
    assert out['v2t/R@1'] == pytest.approx(200 / 3)
    assert out['v2t/MdR'] == pytest.approx(1.0)
    assert out['v2t/MnR'] == pytest.approx(2.0)


def test_v2t_group_mode_official():
    out = retrieval_metrics(SIM, T2V, v2t_mode='group', return_ranks=True)
    # v1 column, groups: G0 max(.8,.7)=.8, G1 .6, G2 max(.1,.65)=.65 -> 3
    assert out['v2t/ranks'].tolist() == [1, 3, 1]
    # t2v is unaffected by the v2t mode
    assert out['t2v/ranks'].tolist() == [3, 1, 2, 2, 1]


def test_constant_similarity_ties_count_against_the_model():
    sim = np.full((3, 2), 0.5)
    t2v = [0, 0, 1]
    out = retrieval_metrics(sim, t2v, return_ranks=True)
    assert out['t2v/ranks'].tolist() == [2, 2, 2]
    # v0: own captions t0,t1 do not count, t2 ties -> 2;
    # v1: t0 and t1 tie -> 3
    assert out['v2t/ranks'].tolist() == [2, 3]
    assert out['t2v/R@1'] == 0.0 and out['v2t/R@1'] == 0.0
    grp = retrieval_metrics(sim, t2v, v2t_mode='group', return_ranks=True)
    assert grp['v2t/ranks'].tolist() == [2, 2]
    opt = retrieval_metrics(sim, t2v, ties='optimistic', return_ranks=True)
    assert opt['t2v/ranks'].tolist() == [1, 1, 1]
    assert opt['v2t/ranks'].tolist() == [1, 1]


def test_one_caption_per_video_v2t_is_transpose():
    rng = np.random.RandomState(0)
    sim = rng.randn(7, 7)
    a = retrieval_metrics(sim, np.arange(7), return_ranks=True)
    b = retrieval_metrics(sim.T.copy(), np.arange(7), return_ranks=True)
    assert a['v2t/ranks'].tolist() == b['t2v/ranks'].tolist()
    # brute force t2v rank for a random matrix (no ties)
    brute = [1 + int((sim[i] > sim[i, i]).sum()) for i in range(7)]
    assert a['t2v/ranks'].tolist() == brute


def test_keys_and_torch_input():
    sim = torch.tensor(SIM)
    out = retrieval_metrics(sim, torch.tensor(T2V))
    assert set(out) == {
        f'{d}/{k}'
        for d in ('t2v', 'v2t')
        for k in ('R@1', 'R@5', 'R@10', 'MdR', 'MnR')
    }
    assert all(isinstance(v, float) for v in out.values())
    assert out == retrieval_metrics(SIM, T2V)


# DSL, worked by hand with temperature 10:
#   S = [[0.6, 0.7], [0.1, 0.65]], captions 0 -> v0, 1 -> v1.
#   no DSL: t2v ranks [2, 1] (v1 is a "hub"), v2t ranks [1, 2].
#   t2v, softmax over texts per video:
#     col0 softmax(6, 1) = [0.99331, 0.00669], col1 softmax(7, 6.5) =
#     [0.62246, 0.37754]; S' = [[0.59599, 0.43572], [0.00067, 0.24540]]
#     -> t2v ranks [1, 1].
#   v2t, softmax over videos per text:
#     row0 softmax(6, 7) = [0.26894, 0.73106], row1 softmax(1, 6.5) =
#     [0.00407, 0.99593]; S'' = [[0.16137, 0.51174], [0.00041, 0.64735]]
#     -> v2t ranks [1, 1]. (With the t2v matrix S' instead, video 1 would
#     rank its caption 2nd: 0.24540 < 0.43572.)
DSL_SIM = np.array([[0.6, 0.7], [0.1, 0.65]])


def test_dsl_hand_computed():
    plain = retrieval_metrics(DSL_SIM, [0, 1], return_ranks=True)
    assert plain['t2v/ranks'].tolist() == [2, 1]
    assert plain['v2t/ranks'].tolist() == [1, 2]
    dsl = retrieval_metrics(
        DSL_SIM, [0, 1], dsl=True, dsl_temperature=10.0, return_ranks=True)
    assert dsl['t2v/ranks'].tolist() == [1, 1]
    assert dsl['v2t/ranks'].tolist() == [1, 1]
    assert dsl['t2v/R@1'] == 100.0 and plain['t2v/R@1'] == 50.0


def test_dual_softmax_values():
    from mmstop.evaluation.functional import dual_softmax
    t2v = dual_softmax(DSL_SIM, 10.0, dim=0)
    np.testing.assert_allclose(
        t2v, [[0.59599, 0.43572], [0.00067, 0.24540]], atol=2e-5)
    v2t = dual_softmax(DSL_SIM, 10.0, dim=1)
    np.testing.assert_allclose(
        v2t, [[0.16137, 0.51174], [0.00041, 0.64735]], atol=2e-5)


def test_video_without_caption():
    sim = np.array([[0.9, 0.1, 0.95], [0.2, 0.8, 0.1]])
    with pytest.raises(
            ValueError, match=r'1 of 3 videos have no caption'
            r'.*\[2\]'):
        retrieval_metrics(sim, [0, 1])
    out = retrieval_metrics(
        sim, [0, 1], allow_videos_without_captions=True, return_ranks=True)
    # video 2 stays a t2v distractor: caption 0 ranks behind it
    assert out['t2v/ranks'].tolist() == [2, 1]
    # and is no v2t query
    assert out['v2t/ranks'].tolist() == [1, 1]
    grp = retrieval_metrics(
        sim, [0, 1],
        v2t_mode='group',
        allow_videos_without_captions=True,
        return_ranks=True)
    assert grp['v2t/ranks'].tolist() == [1, 1]


@pytest.mark.parametrize('sim,t2v,match', [
    (np.array([[0.1, np.nan], [0.2, 0.3]]), [0, 1], 'NaN'),
    (np.ones((2, 2)), [0, 2], r'text_to_video\[1\] = 2'),
    (np.ones((2, 2)), [0, -1], r'text_to_video\[1\] = -1'),
    (np.ones((3, 2)), [0, 1], r'shape \[3\]'),
    (np.ones(4), [0, 1], '2-D'),
    (np.ones((2, 2)), [0.0, 0.5], 'integer'),
])
def test_bad_input(sim, t2v, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(sim, t2v)


def test_bad_options():
    with pytest.raises(ValueError, match='ties'):
        retrieval_metrics(SIM, T2V, ties='random')
    with pytest.raises(ValueError, match='v2t_mode'):
        retrieval_metrics(SIM, T2V, v2t_mode='text')


def test_chunked_ranking_matches(monkeypatch):
    import mmstop.evaluation.functional.retrieval as mod
    rng = np.random.RandomState(1)
    sim = rng.randint(0, 4, size=(9, 4)).astype(np.float32)  # many ties
    t2v = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3])
    full = retrieval_metrics(sim, t2v, return_ranks=True)
    monkeypatch.setattr(mod, '_CHUNK_ELEMENTS', 8)  # 2 rows per chunk
    chunked = retrieval_metrics(sim, t2v, return_ranks=True)
    assert full['t2v/ranks'].tolist() == chunked['t2v/ranks'].tolist()
    brute = [
        1 + sum(sim[i, v] >= sim[i, t2v[i]] for v in range(4) if v != t2v[i])
        for i in range(9)
    ]
    assert full['t2v/ranks'].tolist() == brute
    brute_v2t = []
    for v in range(4):
        best = sim[t2v == v, v].max()
        brute_v2t.append(1 + int((sim[t2v != v, v] >= best).sum()))
    assert full['v2t/ranks'].tolist() == brute_v2t
