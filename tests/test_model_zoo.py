# Copyright (c) mmstop contributors. All rights reserved.
"""The model zoo (issue 11): ``model-index.yml`` and the metafiles list every
shipped config once, in MMAction2's schema, with the fields measured by the
tools, the papers' results marked as the papers', no weights; openmim reads
them (``mim search mmstop``); the README's FLOPs table agrees."""
import importlib.util
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml
from helpers import REPO_ROOT

#: Metadata every model has (the measured ones by update_model_zoo.py).
REQUIRED = ('Architecture', 'Pretrained', 'Training Data', 'Frames',
            'Resolution', 'Views', 'Parameters', 'Trainable Parameters',
            'MACs per View')
#: Checked against a fresh measurement (the others take minutes on CPU).
REMEASURED = (
    'stop_clip_demo',
    'stop_clip_retrieval_demo',
    'ssp_videomamba_demo',
    'stop_clip_ucf101',
    'ssp_videomamba_m16_ucf101',
    # a linear probe of a CLIP: its text tower never runs
    'clip_probe_motion')


def shipped_configs():
    out = subprocess.run(['git', 'ls-files', 'configs/*.py'],
                         cwd=REPO_ROOT,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return sorted(p for p in out.split() if p.count('/') == 1)


@pytest.fixture(scope='module')
def zoo():
    with open(osp.join(REPO_ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    collections, models = {}, []
    for path in imports:
        with open(osp.join(REPO_ROOT, path)) as f:
            data = yaml.safe_load(f)
        collections.update({c['Name']: c for c in data['Collections']})
        models += data['Models']
    return collections, models


def test_every_shipped_config_once(zoo):
    _, models = zoo
    configs = [m['Config'] for m in models]
    assert len(configs) == len(set(configs))
    assert sorted(configs) == shipped_configs(), (
        'configs/ and the metafiles of model-index.yml differ: add a model '
        'entry, then run python tools/misc/update_model_zoo.py')
    for model in models:
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]


def test_schema_tasks_and_papers_results(zoo):
    collections, models = zoo
    for collection in collections.values():
        assert osp.isfile(osp.join(REPO_ROOT, collection['README']))
        assert collection['Paper']['URL'].startswith('https://arxiv.org/')
    for model in models:
        assert model['In Collection'] in collections
        assert 'Weights' not in model  # no mmstop-trained weights yet
        assert all(key in model['Metadata'] for key in REQUIRED), model
        [result] = model['Results']
        assert result['Task'] in ('Action Recognition', 'Video Retrieval')
        assert result['Dataset']
        for metric in result['Metrics']:
            assert metric.endswith(' (paper)'), (model['Name'], metric)


@pytest.mark.usefixtures('one_thread')
def test_measured_fields_are_the_tools(load_tool, tmp_path):
    tool = load_tool('tools/misc/update_model_zoo.py')
    from mmstop.utils.complexity import write_probe_video
    video = write_probe_video(str(tmp_path / 'probe.mp4'))
    changes = []
    for path in tool.metafiles(osp.join(REPO_ROOT, 'model-index.yml')):
        changes += tool.update(path, video, check=True, names=list(REMEASURED))
    assert not changes


def giga(text):
    return float(str(text).split('G')[0])


def test_readme_table_is_the_zoos(zoo):
    """The README's FLOPs table (tools/analysis/get_flops.py --markdown)
    and the metafiles (tools/misc/update_model_zoo.py) agree."""
    _, models = zoo
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        readme = f.read()
    rows = {}
    for line in readme.splitlines():
        match = re.match(
            r'\| `(configs/\w+\.py)`[^|]* \| (\w+) \| (\d+) \| '
            r'(\d+) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \|', line)
        if match:
            rows[match.group(1)] = match.groups()[1:]
    assert sorted(rows) == shipped_configs()
    for model in models:
        _, frames, views, params, trainable, macs = rows[model['Config']]
        meta = model['Metadata']
        assert (int(frames), int(views)) == (meta['Frames'], meta['Views'])
        assert int(params.replace(',', '')) == meta['Parameters']
        assert int(trainable.replace(',', '')) == \
            meta['Trainable Parameters']
        assert float(macs) == pytest.approx(
            giga(meta['MACs per View']), rel=1e-3, abs=0.006)


@pytest.mark.skipif(
    importlib.util.find_spec('mim') is None,
    reason='openmim is not installed (pip install --no-deps '
    'openmim==0.3.9 model-index, see the README)')
def test_mim_search_lists_the_models(zoo):
    _, models = zoo
    # from the repository root: mim finds an editable install there
    out = subprocess.run([sys.executable, '-m', 'mim', 'search', 'mmstop'],
                         cwd=REPO_ROOT,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = re.findall(r'config id: (\S+)', out.stdout)
    assert sorted(listed) == sorted(m['Name'] for m in models)
