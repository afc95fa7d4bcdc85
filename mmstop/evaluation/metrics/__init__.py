# Copyright (c) mmstop contributors. All rights reserved.
from .retrieval_metric import VideoTextRetrievalMetric  # noqa: F401
