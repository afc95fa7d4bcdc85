# Copyright (c) mmstop contributors. All rights reserved.
from . import metrics  # noqa: F401
from .functional import retrieval_metrics
from .metrics import VideoTextRetrievalMetric

__all__ = ['retrieval_metrics', 'VideoTextRetrievalMetric']
