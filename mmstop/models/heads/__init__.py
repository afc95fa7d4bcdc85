# Copyright (c) mmstop contributors. All rights reserved.
from .text_classifier import TextClassifierHead

__all__ = ['TextClassifierHead']
