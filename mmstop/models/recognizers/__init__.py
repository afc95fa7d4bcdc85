# Copyright (c) mmstop contributors. All rights reserved.
from .stop_recognizer import STOPRecognizer

__all__ = ['STOPRecognizer']
