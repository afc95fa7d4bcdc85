# Copyright (c) mmstop contributors. All rights reserved.
"""tools/analysis/benchmark_scan.py: the implementations it compares agree."""
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT


def run(tmp_path, *argv, **env):
    out = tmp_path / 'scan.json'
    cmd = [
        sys.executable, 'tools/analysis/benchmark_scan.py', '--repeats', '1',
        '--warmup', '0', '--threads', '1', '--json',
        str(out), *argv
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS='1', **env),
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def check(rows, impl, baseline, rel):
    assert all((r['impl'], r['baseline']) == (impl, baseline) for r in rows)
    for r in rows:
        # the output and, with the backward, all eight gradients compared
        assert r['max_rel_diff'] <= rel, r
        if r['mode'] == 'fwd+bwd':
            assert set(r['max_abs_diff_grad']) == {
                'u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias'
            }
        assert r['speedup'] == pytest.approx(r['baseline_median_ms'] /
                                             r['impl_median_ms'])


@pytest.mark.slow
def test_fast_against_reference_with_memory(tmp_path):
    # one case: each memory measurement is a fresh process
    rows, stdout = run(tmp_path, '--sizes', '2,6,13,4', '--modes', 'fwd+bwd')
    assert [r['mode'] for r in rows] == ['fwd+bwd']
    check(rows, 'fast', 'reference', 1e-5)
    assert all(r['baseline_peak_mib'] >= 0 for r in rows)
    assert 'speed-up = reference / fast' in stdout


def test_triton_under_interpreter(tmp_path):
    pytest.importorskip('triton')
    rows, stdout = run(
        tmp_path,
        '--impl',
        'triton',
        '--baseline',
        'fast',
        '--sizes',
        '1,4,9,3',
        '2,6,13,4',
        '--no-memory',
        TRITON_INTERPRET='1')
    assert [r['mode'] for r in rows] == ['fwd', 'fwd+bwd'] * 2
    check(rows, 'triton', 'fast', 1e-5)
    assert 'triton against fast on cpu' in stdout
