# Copyright (c) mmstop contributors. All rights reserved.
"""tools/analysis/benchmark_conv.py --model: times a STOP recognizer with
each convolution backend rule, the rules really switch the backend, the
backends give the same scores, and conv3d_same's rule is left in place."""
import os.path as osp
import re

import pytest
from helpers import REPO_ROOT

import mmstop.models.utils.conv as conv

pytestmark = pytest.mark.usefixtures('one_thread')


def test_model_mode_on_the_demo_config(load_tool, capsys, monkeypatch):
    bench = load_tool('tools/analysis/benchmark_conv.py')
    rule = conv.uses_fft
    # which rule is in force whenever a convolution runs as FFTs
    names = {id(fn): name for name, fn in bench.RULES.items()}
    fft_under = set()
    fft = conv._conv3d_fft

    def spy(*args, **kwargs):
        fft_under.add(names.get(id(conv.uses_fft), 'unknown'))
        return fft(*args, **kwargs)

    monkeypatch.setattr(conv, '_conv3d_fft', spy)
    bench.main([
        '--model',
        osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py'), '--repeats', '1',
        '--batch-size', '2'
    ])
    out = capsys.readouterr().out
    assert 'batch 2 x 8 frames x 32px' in out
    rows = re.findall(
        r'^\| (auto|direct|fft) \| [0-9.]+ \| [0-9.]+ \| ([0-9.e+-]+) \|$',
        out,
        flags=re.M)
    assert [r[0] for r in rows] == ['auto', 'direct', 'fft'], out
    diffs = {name: float(d) for name, d in rows}
    assert diffs['direct'] == 0
    # FFT and F.conv3d agree to float32 rounding on the whole model
    assert diffs['fft'] < 1e-4 and diffs['auto'] < 1e-4
    assert 'fft' in fft_under and 'direct' not in fft_under
    assert conv.uses_fft is rule  # restored
