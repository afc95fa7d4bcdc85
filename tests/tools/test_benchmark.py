# Copyright (c) mmstop contributors. All rights reserved.
"""tools/analysis/benchmark.py: one measurement in a fresh worker process."""
import json
import re
import statistics

import pytest


@pytest.fixture(scope='module')
def bench(load_tool):
    return load_tool('tools/analysis/benchmark.py')


def test_train_step_small(bench, tmp_path, capsys):
    out = str(tmp_path / 'bench.json')
    results = bench.main([
        '--arch', 'tiny', '--size', '32', '--frames', '2', '--repeats', '2',
        '--warmup', '0', '--threads', '1', '--impls', 'fast', '--modes',
        'train', '--flush-denormal', '--json', out
    ])
    assert len(results) == 1
    r = results[0]
    assert 'error' not in r, r.get('error')
    assert (r['impl'], r['mode'], r['threads'],
            r['flush_denormal']) == ('fast', 'train', 1, True)
    assert len(r['times_s']) == 2
    assert r['median_s'] == statistics.median(r['times_s'])
    assert r['min_s'] == min(r['times_s'])
    assert r['clips_per_s'] == pytest.approx(1 / r['median_s'])
    # tiny, 32 px / patch 16 (2 x 2 grid), 2 frames, P = 3
    assert (r['embed_dims'], r['depth'], r['seq_len']) == (192, 24,
                                                           1 + 2 * (4 + 3))
    # SSP + norm_f (192) + UCF101 head (192 x 101 + 101)
    assert r['trainable_params'] == r['ssp_params'] + 192 + 192 * 101 + 101
    # backward + AdamW state need resident memory beyond the baseline
    assert r['peak_rss_mib'] >= r['baseline_rss_mib'] > 0
    assert r['peak_extra_mib'] > 0
    # the printed row holds the measured values, column by column
    row, = re.findall(
        r'^\| fast \| train \| (.*) \|$', capsys.readouterr().out, flags=re.M)
    cells = row.split(' | ')
    assert cells[:5] == [
        f"{r['median_s']:.3f} ({r['min_s']:.3f})", f"{r['clips_per_s']:.4g}",
        f"{r['baseline_rss_mib']:.0f}", f"{r['peak_rss_mib']:.0f}",
        f"{r['peak_extra_mib']:.0f}"
    ]
    with open(out) as f:
        saved = json.load(f)
    assert saved['results'] == json.loads(json.dumps(results))
    assert saved['info']['torch']


def test_bad_arguments(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(['--repeats', '0'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--impls', 'cuda'])


def test_memory_guard_stops_a_worker(bench):
    # any worker is resident above 0.05 GiB once torch is imported
    results = bench.main([
        '--arch', 'tiny', '--size', '32', '--frames', '2', '--repeats', '1',
        '--warmup', '0', '--impls', 'reference', '--modes', 'forward',
        '--max-rss-gib', '0.05'
    ])
    assert 'resident memory reached' in results[0]['error']
    assert 'median_s' not in results[0]
