# Copyright (c) mmstop contributors. All rights reserved.
"""Every shipped config saves with AtomicCheckpointHook and runs the hooks of
configs/_base_/default_runtime.py."""
import glob
import os.path as osp

import pytest
from helpers import REPO_ROOT
from mmengine.config import Config

CONFIGS = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*.py')))
HOOKS = [
    'StrictLoadHook', 'NonFiniteCheckHook', 'RandomStateHook', 'BadVideoHook'
]


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_has_trust_hooks(path):
    cfg = Config.fromfile(path)
    assert [h['type'] for h in cfg.custom_hooks] == HOOKS
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    nonfinite = cfg.custom_hooks[1]
    assert nonfinite.get('action', 'stop') == 'stop'
