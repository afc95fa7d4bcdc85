# Copyright (c) mmstop contributors. All rights reserved.
"""Text-video retrieval metrics on a text x video similarity matrix.

:func:`retrieval_metrics` ranks every text query against all videos
(text-to-video, ``t2v``) and every video query against all texts
(video-to-text, ``v2t``), and reports R@K (percent of queries whose ground
truth is ranked within the first K), MdR (median rank) and MnR (mean rank),
with 1-based ranks. It supports several captions per video: ``sim`` has one
row per caption and ``text_to_video[i]`` names the video of caption ``i``.

Ranks (definition, both directions):

* **t2v.** Caption ``i`` is a query, its ground truth is the single video
  ``g = text_to_video[i]``. With ``ties='pessimistic'`` (default)::

      rank_i = 1 + #{ v != g : sim[i, v] >= sim[i, g] }

  i.e. every *other* video scoring at least as high as the ground truth is
  ranked before it: ties count against the model, so a constant similarity
  matrix gives rank = number of videos, not 1. With ``ties='optimistic'``
  only strictly higher scores count (``>``): this is what the official
  CLIP4Clip/STOP ``compute_metrics`` computes when no ties occur (the official
  code emits several ranks for one query when ties occur).
* **v2t, ``v2t_mode='caption'`` (default).** Video ``v`` is a query, its
  ground truth is the *set* ``G_v`` of its captions and the candidates are all
  texts. Its best caption counts::

      best_v = max_{i in G_v} sim[i, v]
      rank_v = 1 + #{ i not in G_v : sim[i, v] >= best_v }   (pessimistic)

  Captions of the same video never count against each other. With one caption
  per video this is the transpose of t2v.
* **v2t, ``v2t_mode='group'``.** The official multi-sentence evaluation of
  CLIP4Clip/STOP (``tensor_video_to_text_sim``): the captions of each video
  form one candidate whose score for video ``v`` is the maximum over its
  captions, ``M[k, v] = max_{i in G_k} sim[i, v]``; then
  ``rank_v = 1 + #{ k != v : M[k, v] >= M[v, v] }``. The candidates are the
  videos' caption groups, not individual texts.

Videos without any caption: they are valid t2v candidates (distractors) but
have no v2t ground truth. By default they raise a ``ValueError``; with
``allow_videos_without_captions=True`` they are excluded from the v2t queries
(still candidates in t2v, and in ``group`` mode they are not v2t candidates
since they have no caption group).

DSL (dual softmax, CAMoE; opt-in with ``dsl=True``). Before ranking in one
direction the similarity is re-weighted by a softmax over the *query* axis,
i.e. the axis other than the one being ranked::

    t2v:  S' = S * softmax(temperature * S, dim=0)   (over texts, per video)
    v2t:  S' = S * softmax(temperature * S, dim=1)   (over videos, per text)

(the constant factor ``len(S)`` of some implementations does not change
ranks and is left out). ``temperature`` multiplies the similarity as given:
with cosine similarities, 100 is CLIP's frozen logit scale. DSL uses the
whole query set (a transductive prior); the official STOP evaluation has it
commented out, so the reported numbers do not use it.
"""
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]

_TIES = ('pessimistic', 'optimistic')
_V2T_MODES = ('caption', 'group')

# Rows of the similarity matrix compared at once (bounds the boolean
# temporaries to about 16 M entries).
_CHUNK_ELEMENTS = 1 << 24


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def dual_softmax(sim: np.ndarray,
                 temperature: float = 100.0,
                 dim: int = 0) -> np.ndarray:
    """DSL re-weighting ``sim * softmax(temperature * sim, dim)``.

    Args:
        sim (np.ndarray): Similarity matrix, rows are texts, columns videos.
        temperature (float): Multiplies ``sim`` inside the softmax.
            Defaults to 100.0.
        dim (int): Axis of the softmax: 0 (over texts, for t2v ranking) or
            1 (over videos, for v2t ranking). Defaults to 0.

    Returns:
        np.ndarray: The re-weighted matrix, same shape and dtype as ``sim``.
    """
    logits = temperature * sim.astype(np.float64)
    logits = logits - logits.max(axis=dim, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=dim, keepdims=True)
    return (sim * prob).astype(sim.dtype)


def _summarise(ranks: np.ndarray, direction: str,
               ks: Sequence[int]) -> Dict[str, float]:
    out = {}
    for k in ks:
        out[f'{direction}/R@{k}'] = float(np.mean(ranks <= k) * 100.0)
    out[f'{direction}/MdR'] = float(np.median(ranks))
    out[f'{direction}/MnR'] = float(np.mean(ranks))
    return out


def t2v_ranks(sim: np.ndarray,
              text_to_video: np.ndarray,
              ties: str = 'pessimistic') -> np.ndarray:
    """1-based rank of each caption's video among all videos.

    Args:
        sim (np.ndarray): [num_texts, num_videos] similarity.
        text_to_video (np.ndarray): [num_texts] video index of each caption.
        ties (str): ``'pessimistic'`` (other videos with an equal score rank
            before the ground truth) or ``'optimistic'``.
            Defaults to ``'pessimistic'``.

    Returns:
        np.ndarray: int64 ranks, shape [num_texts].
    """
    num_texts, num_videos = sim.shape
    ranks = np.empty(num_texts, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(num_videos, 1))
    for start in range(0, num_texts, step):
        rows = sim[start:start + step]
        gt = rows[np.arange(rows.shape[0]), text_to_video[start:start + step]]
        if ties == 'pessimistic':
            # counts the ground truth itself once (gt >= gt)
            ranks[start:start + step] = (rows >= gt[:, None]).sum(axis=1)
        else:
            ranks[start:start + step] = 1 + (rows > gt[:, None]).sum(axis=1)
    return ranks


def v2t_ranks(sim: np.ndarray,
              text_to_video: np.ndarray,
              ties: str = 'pessimistic',
              v2t_mode: str = 'caption',
              query_videos: Optional[np.ndarray] = None) -> np.ndarray:
    """1-based rank of each video's best caption (see module docstring).

    Args:
        sim (np.ndarray): [num_texts, num_videos] similarity.
        text_to_video (np.ndarray): [num_texts] video index of each caption.
        ties (str): ``'pessimistic'`` or ``'optimistic'``.
            Defaults to ``'pessimistic'``.
        v2t_mode (str): ``'caption'`` (all texts are candidates) or
            ``'group'`` (each video's caption set is one candidate).
            Defaults to ``'caption'``.
        query_videos (np.ndarray, optional): Sorted indices of the videos
            used as queries; all of them must have a caption. Defaults to
            all videos.

    Returns:
        np.ndarray: int64 ranks, one per query video.
    """
    num_texts, num_videos = sim.shape
    if query_videos is None:
        query_videos = np.arange(num_videos)
    # best caption score of every video (-inf for videos without caption)
    best = np.full(num_videos, -np.inf, dtype=np.float64)
    np.maximum.at(best, text_to_video, sim[np.arange(num_texts),
                                           text_to_video].astype(np.float64))
    if v2t_mode == 'caption':
        sub = sim if len(query_videos) == num_videos else sim[:, query_videos]
        best_q = best[query_videos]
        if ties == 'pessimistic':
            hits = (sub >= best_q[None, :]).sum(axis=0)
            # the query's own captions scoring >= its best caption are
            # exactly those equal to it (at least one): take them out
            own_score = sim[np.arange(num_texts), text_to_video]
            own_hit = own_score >= best[text_to_video]
            own = np.bincount(
                text_to_video, weights=own_hit,
                minlength=num_videos)[query_videos].astype(np.int64)
            return 1 + hits.astype(np.int64) - own
        # no caption of the query can score strictly above its best one
        return 1 + (sub > best_q[None, :]).sum(axis=0).astype(np.int64)
    # group mode: M[k, v] = best caption of video k against video v
    order = np.argsort(text_to_video, kind='stable')
    groups, starts = np.unique(text_to_video[order], return_index=True)
    group_max = np.maximum.reduceat(sim[order], starts, axis=0)
    group_max = group_max[:, query_videos]  # [num_groups, num_queries]
    group_of_video = np.full(num_videos, -1, dtype=np.int64)
    group_of_video[groups] = np.arange(len(groups))
    gt = group_max[group_of_video[query_videos], np.arange(len(query_videos))]
    if ties == 'pessimistic':
        # includes the ground-truth group itself
        return (group_max >= gt[None, :]).sum(axis=0).astype(np.int64)
    return 1 + (group_max > gt[None, :]).sum(axis=0).astype(np.int64)


def retrieval_metrics(sim: ArrayLike,
                      text_to_video: ArrayLike,
                      ks: Sequence[int] = (1, 5, 10),
                      ties: str = 'pessimistic',
                      v2t_mode: str = 'caption',
                      dsl: bool = False,
                      dsl_temperature: float = 100.0,
                      allow_videos_without_captions: bool = False,
                      return_ranks: bool = False) -> Dict:
    """Text-to-video and video-to-text R@K, MdR and MnR.

    See the module docstring for the exact rank definitions.

    Args:
        sim (np.ndarray | torch.Tensor): [num_texts, num_videos] similarity,
            higher is better. Must not contain NaN.
        text_to_video (array-like of int): [num_texts], the video index (a
            column of ``sim``) of every caption.
        ks (Sequence[int]): The K of the R@K keys. Defaults to (1, 5, 10).
        ties (str): ``'pessimistic'`` (other candidates with a score equal to
            the ground truth rank before it) or ``'optimistic'``.
            Defaults to ``'pessimistic'``.
        v2t_mode (str): ``'caption'`` or ``'group'``.
            Defaults to ``'caption'``.
        dsl (bool): Apply dual-softmax re-weighting before ranking.
            Defaults to False.
        dsl_temperature (float): Temperature of the DSL softmax.
            Defaults to 100.0.
        allow_videos_without_captions (bool): If False, a video that no
            caption points to raises ``ValueError``; if True it stays a t2v
            candidate and is excluded from the v2t queries.
            Defaults to False.
        return_ranks (bool): Also return the per-query rank arrays under
            ``'t2v/ranks'`` and ``'v2t/ranks'``. Defaults to False.

    Returns:
        dict: ``t2v/R@1``, ``t2v/R@5``, ``t2v/R@10`` (percent), ``t2v/MdR``,
        ``t2v/MnR`` (1-based ranks) and the same keys for ``v2t/``.
    """
    if ties not in _TIES:
        raise ValueError(f'ties must be one of {_TIES}, got {ties!r}')
    if v2t_mode not in _V2T_MODES:
        raise ValueError(
            f'v2t_mode must be one of {_V2T_MODES}, got {v2t_mode!r}')
    sim = _to_numpy(sim, 'sim')
    if sim.ndim != 2:
        raise ValueError('sim must be a 2-D [num_texts, num_videos] matrix, '
                         f'got shape {tuple(sim.shape)}')
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    num_texts, num_videos = sim.shape
    if num_texts == 0 or num_videos == 0:
        raise ValueError(f'sim is empty: shape {tuple(sim.shape)}')
    nan = np.isnan(sim)
    if nan.any():
        rows = np.unique(np.nonzero(nan)[0])
        raise ValueError(
            f'sim contains {int(nan.sum())} NaN entries (text rows '
            f'{rows[:10].tolist()}{"..." if len(rows) > 10 else ""}); ranks '
            'are undefined. Check the features fed to the metric.')
    t2v = _to_numpy(text_to_video, 'text_to_video')
    if t2v.ndim != 1 or t2v.shape[0] != num_texts:
        raise ValueError(
            f'text_to_video must have shape [{num_texts}] (one video index '
            f'per row of sim), got shape {tuple(t2v.shape)}')
    if t2v.size and not np.issubdtype(t2v.dtype, np.integer):
        if np.all(np.mod(t2v, 1) == 0):
            t2v = t2v.astype(np.int64)
        else:
            raise ValueError('text_to_video must hold integer video indices, '
                             f'got dtype {t2v.dtype}')
    t2v = t2v.astype(np.int64)
    bad = (t2v < 0) | (t2v >= num_videos)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(
            f'text_to_video[{i}] = {int(t2v[i])} is not a video index in '
            f'[0, {num_videos}) ({int(bad.sum())} invalid entries)')
    has_caption = np.bincount(t2v, minlength=num_videos) > 0
    if has_caption.all():
        query_videos = np.arange(num_videos)
    elif allow_videos_without_captions:
        query_videos = np.nonzero(has_caption)[0]
    else:
        missing = np.nonzero(~has_caption)[0]
        raise ValueError(
            f'{len(missing)} of {num_videos} videos have no caption '
            f'(video indices {missing[:10].tolist()}'
            f'{"..." if len(missing) > 10 else ""}): video-to-text ranks '
            'are undefined. Pass allow_videos_without_captions=True to keep '
            'them as text-to-video distractors only.')

    sim_t2v = dual_softmax(sim, dsl_temperature, dim=0) if dsl else sim
    sim_v2t = dual_softmax(sim, dsl_temperature, dim=1) if dsl else sim
    r_t2v = t2v_ranks(sim_t2v, t2v, ties)
    r_v2t = v2t_ranks(sim_v2t, t2v, ties, v2t_mode, query_videos)
    out = {}
    out.update(_summarise(r_t2v, 't2v', ks))
    out.update(_summarise(r_v2t, 'v2t', ks))
    if return_ranks:
        out['t2v/ranks'] = r_t2v
        out['v2t/ranks'] = r_v2t
    return out
