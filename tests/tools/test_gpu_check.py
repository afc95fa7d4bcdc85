# Copyright (c) mmstop contributors. All rights reserved.
"""tools/analysis/gpu_check.py: its CPU dry run, loss judging, report."""
import json

import pytest


@pytest.fixture(scope='module')
def gpu_check(load_tool):
    return load_tool('tools/analysis/gpu_check.py')


@pytest.mark.slow
def test_cpu_dry_run(gpu_check, tmp_path, monkeypatch):
    """Every section the CPU can run, on demo sizes, end to end."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    out = tmp_path / 'report.md'
    status = gpu_check.main([
        '--device', 'cpu', '--quick', '--out',
        str(out), '--repeats', '1', '--train-configs', 'stop_clip_demo.py'
    ])
    text = out.read_text()
    report = json.loads((tmp_path / 'report.json').read_text())
    res = report['results']
    assert res['tests'] == dict(
        skipped='needs CUDA (this was a --device cpu run)')
    (run, ) = res['train']['runs']  # AMP runs need a GPU
    assert (run['config'], run['precision']) == ('stop_clip_demo.py', 'fp32')
    # 16 training videos, batch 4, 2 epochs, every iteration logged
    assert (run['iterations'], run['epochs'], run['finite']) == (8, 2, True)
    assert run['ok'] == run['falling']
    assert [r['batch'] for r in res['throughput']['rows']] == [2, 2]
    for row in res['throughput']['rows']:
        assert row['clips_per_s'] == pytest.approx(2 / row['seconds'])
        assert row['trainable'] > 0 and row['peak_gib'] is None
    assert [r['impl'] for r in res['scan']['rows']] == ['fast']
    assert status == (0 if report['ok'] else 1)
    assert report['ok'] == run['ok']
    for heading in ('## Training the demo configs', '## Training throughput',
                    '## Selective scan alone', 'Overall: **'):
        assert heading in text


def test_judge_losses(gpu_check):
    rows = [(1, 2.0), (1, 1.8), (2, 1.5), (2, 1.4)]
    res = gpu_check.judge_losses(rows)
    assert res['ok'] and res['first_epoch_loss'] == pytest.approx(1.9)
    assert not gpu_check.judge_losses([(1, 1.0), (2, 1.2)])['ok']
    bad = gpu_check.judge_losses([(1, 2.0), (2, float('nan'))])
    assert (bad['ok'], bad['why']) == (False, 'non-finite loss')
    assert not gpu_check.judge_losses([(1, 2.0), (1, 1.0)])['ok']  # 1 epoch


def test_report_lists_failures(gpu_check):
    runs = [
        dict(
            label='suite',
            passed=3,
            failed=1,
            skipped=0,
            seconds=2.0,
            failures=['tests/x.py::test_y'],
            error='tail')
    ]
    results = dict(tests=dict(runs=runs))
    assert not gpu_check.overall_ok(results)
    text = gpu_check.render(
        dict(
            command='c',
            date='d',
            seconds=1.0,
            environment=dict(a=1),
            results=results,
            ok=False))
    assert '| suite | 3 | 1 | 0 | 2 |' in text
    assert 'Failed: tests/x.py::test_y' in text
    assert 'Overall: **FAILED**' in text
