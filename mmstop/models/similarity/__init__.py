# Copyright (c) mmstop contributors. All rights reserved.
from .gather import gather_features
from .stop_similarity import STOPSimilarity, symmetric_info_nce

__all__ = ['STOPSimilarity', 'gather_features', 'symmetric_info_nce']
