# Copyright (c) mmstop contributors. All rights reserved.
"""MACs and parameters of the configs (issue 11): MMAction2's own
``get_flops.py`` runs on mmstop configs, and ``tools/analysis/get_flops.py``
reports parameters, MACs per view and per forward, views per test."""
import os
import os.path as osp
import runpy
import sys

import mmaction
import pytest
import torch
from helpers import REPO_ROOT
from helpers.configs import config_path, small_ssp_config
from mmengine.config import Config

from mmstop.utils import complexity
from mmstop.utils.flops import MACCounter

pytestmark = pytest.mark.usefixtures('one_thread')

MMACTION_GET_FLOPS = osp.join(
    osp.dirname(mmaction.__file__), '.mim', 'tools', 'analysis_tools',
    'get_flops.py')
DEMOS = {
    # config: (--shape of MMAction2's get_flops.py, views per test)
    'stop_clip_demo.py': (['1', '3', '8', '32', '32'], 2),
    'stop_clip_paper_demo.py': (['1', '3', '8', '32', '32'], 2),
    'stop_clip_retrieval_demo.py': (['8', '3', '32', '32'], 1),
    'ssp_videomamba_demo.py': (['1', '3', '4', '32', '32'], 6),
}


@pytest.fixture
def demo_classnames(tmp_path, monkeypatch):
    """Run from a directory holding the demo configs' class-name file."""
    (tmp_path / 'data' / 'demo').mkdir(parents=True)
    (tmp_path / 'data' / 'demo' / 'classnames.txt'
     ).write_text('moving up\nmoving down\ngrowing\nshrinking\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize('config', sorted(DEMOS))
def test_mmaction2_get_flops(config, demo_classnames, monkeypatch, capsys):
    """Traced: the FFT convolution (STOP), the bool scatter (paper intra
    prompt), the cached class embeddings (the second trace) and bmm inside
    the selective scan (SSP) used to fail."""
    shape, _ = DEMOS[config]
    path = config_path(config)
    if config.startswith('ssp'):  # the recipe on a 3-block VideoMamba
        path = small_ssp_config(demo_classnames, depth=3)
    monkeypatch.setattr(sys, 'argv',
                        [MMACTION_GET_FLOPS, path, '--shape', *shape])
    runpy.run_path(MMACTION_GET_FLOPS, run_name='__main__')
    out = capsys.readouterr().out
    assert 'Flops:' in out and 'Params:' in out


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('tools/analysis/get_flops.py')


@pytest.fixture(scope='module')
def rows(tool, tmp_path_factory):
    out = tmp_path_factory.mktemp('flops') / 'flops.json'
    configs = [osp.join('configs', c) for c in sorted(DEMOS)]
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        result = tool.main([*configs, '--json', str(out)])
    finally:
        os.chdir(cwd)
    return {osp.basename(r['config']): r for r in result}


def test_views_params_and_counting_device(rows):
    for config, (_, views) in DEMOS.items():
        row = rows[config]
        assert row['views_per_test'] == views
        cfg = Config.fromfile(config_path(config))
        model_cfg, _ = complexity.counting_model_cfg(cfg)
        model = complexity.build(model_cfg, 'cpu')
        assert row['params'] == sum(p.numel() for p in model.parameters())
        assert row['trainable_params'] == sum(p.numel()
                                              for p in model.parameters()
                                              if p.requires_grad)
    assert rows['stop_clip_demo.py']['trainable_params'] == 152126
    # paper mode picks its number of inter prompts from the video
    assert rows['stop_clip_paper_demo.py']['counted_on'] == 'cpu'
    assert rows['stop_clip_demo.py']['counted_on'] == 'meta'
    assert rows['ssp_videomamba_demo.py']['view_shape'] == [3, 4, 32, 32]


def test_per_view_and_per_forward_split(rows):
    """Per forward = STOP's prompt generator (input independent); per view +
    per forward = one view's forward."""
    cfg = Config.fromfile(config_path('stop_clip_demo.py'))
    model = complexity.build(complexity.counting_model_cfg(cfg)[0], 'meta')
    row = rows['stop_clip_demo.py']
    with torch.no_grad():
        model.class_embeddings()
        with MACCounter() as generator:
            model.backbone.prompt_generator()
        view = torch.zeros(1, 3, 8, 32, 32, device='meta')
        with MACCounter() as one_view:
            complexity.views_forward(model, view)
    assert row['macs_per_forward'] == generator.total > 0
    assert row['macs_per_view'] + row['macs_per_forward'] == one_view.total
    assert rows['ssp_videomamba_demo.py']['macs_per_forward'] == 0
    assert rows['ssp_videomamba_demo.py']['text_macs'] is None
    assert rows['stop_clip_retrieval_demo.py']['text_length'] == 32


def test_markdown_table(rows, tool):
    table = tool.markdown_table(list(rows.values()))
    assert table.splitlines()[0].startswith('| config | task | frames |')
    row = '| `configs/ssp_videomamba_demo.py` | recognition | 4 | 6 |'
    assert row in table
