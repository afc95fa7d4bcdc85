# Copyright (c) mmstop contributors. All rights reserved.
"""Metric functions usable outside the MMEngine runner."""
from .retrieval import dual_softmax, retrieval_metrics, t2v_ranks, v2t_ranks

__all__ = ['dual_softmax', 'retrieval_metrics', 't2v_ranks', 'v2t_ranks']
