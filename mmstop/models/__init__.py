# Copyright (c) mmstop contributors. All rights reserved.
from . import backbones, heads, ops, prompts, recognizers, similarity  # noqa: F401,E501
