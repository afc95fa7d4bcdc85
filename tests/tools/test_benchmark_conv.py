# Copyright (c) mmstop contributors. All rights reserved.
"""tools/analysis/benchmark_conv.py --model: times a STOP recognizer with
each convolution backend rule and leaves conv3d_same's rule in place."""
import os.path as osp
import re

import pytest

import mmstop.models.utils.conv as conv

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

pytestmark = pytest.mark.usefixtures('one_thread')


def test_model_mode_on_the_demo_config(load_tool, capsys):
    rule = conv.uses_fft
    load_tool('tools/analysis/benchmark_conv.py').main([
        '--model', osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py'),
        '--repeats', '1', '--batch-size', '2'
    ])
    out = capsys.readouterr().out
    assert 'batch 2 x 8 frames x 32px' in out
    rows = re.findall(r'^\| (auto|direct|fft) \| ([0-9.]+) \| ([0-9.]+) \|$',
                      out, flags=re.M)
    assert [r[0] for r in rows] == ['auto', 'direct', 'fft']
    assert all(float(t) > 0 for r in rows for t in r[1:])
    assert conv.uses_fft is rule  # restored
