# Copyright (c) mmstop contributors. All rights reserved.
"""tools/infer.py (issue 11): top-k classes of videos through MMAction2's
inference API; STOP takes new class names; unreadable videos are named and
skipped."""
import json
import os.path as osp

import pytest
import torch
from helpers.configs import config_model, config_path
from helpers.configs import save_checkpoint as save_model
from mmaction.apis import inference_recognizer
from mmengine.config import Config
from mmengine.dataset import Compose

from mmstop.datasets.demo import generate_demo_dataset
from mmstop.utils.checkpoint import CheckpointMismatchError

pytestmark = pytest.mark.usefixtures('one_thread')

STOP_DEMO = config_path('stop_clip_demo.py')
SSP_DEMO = config_path('ssp_videomamba_demo.py')


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('tools/infer.py')


def save_checkpoint(config, path, meta=None, **head):
    """The config's model (seed 0) as an MMEngine-style checkpoint."""
    return save_model(config_model(config, **head), path, meta)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """``data/demo`` (4 videos) in the working directory, one of them
    corrupt, and a STOP demo checkpoint."""
    monkeypatch.chdir(tmp_path)
    generate_demo_dataset(
        'data/demo', num_classes=4, train_per_class=0, val_per_class=1)
    (tmp_path / 'data' / 'demo' / 'videos' /
     'broken.mp4').write_bytes(b'not a video')
    save_checkpoint(STOP_DEMO, 'stop.pth')
    return tmp_path


def run(tool, *argv):
    code = tool.main([*argv, '--json', 'out.json'])
    with open('out.json') as f:
        return code, json.load(f)


def test_folder_topk_and_skipped_video(tool, demo, capsys):
    code, out = run(tool, STOP_DEMO, 'stop.pth', 'data/demo/videos', '--topk',
                    '3')
    assert code == 1  # a video was skipped
    assert [osp.basename(r['video'])
            for r in out['results']] == [f'val_000{i}.mp4' for i in range(4)]
    assert out['classes'] == [
        'moving up', 'moving down', 'growing', 'shrinking'
    ]
    for result in out['results']:
        scores = [p['score'] for p in result['predictions']]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert all(p['label'] == out['classes'][p['index']]
                   for p in result['predictions'])
    [skipped] = out['skipped']
    assert skipped['video'].endswith('broken.mp4')
    assert 'broken.mp4' in capsys.readouterr().err


def test_new_labels_are_scored_by_the_text_encoder(tool, demo):
    """--labels replaces the trained classes (open vocabulary): the scores
    are those of the model built with these class names."""
    video = 'data/demo/videos/val_0002.mp4'
    labels = ['a red ball rolling', 'a person cooking']
    code, out = run(tool, STOP_DEMO, 'stop.pth', video, '--labels',
                    ', '.join(labels) + ',')
    assert code == 0 and out['classes'] == labels
    cfg = Config.fromfile(STOP_DEMO)
    cfg.model.cls_head.class_names = labels
    model = config_model(STOP_DEMO, class_names=labels).eval()
    model.load_state_dict(torch.load('stop.pth')['state_dict'])
    model.cfg = cfg
    expected = inference_recognizer(
        model, video, Compose(cfg.test_dataloader.dataset.pipeline))
    got = {p['label']: p['score'] for p in out['results'][0]['predictions']}
    torch.testing.assert_close(
        torch.tensor([got[name] for name in labels]),
        expected.pred_score.float(),
        rtol=1e-5,
        atol=1e-6)


def test_class_names_from_the_checkpoint(tool, demo):
    """Without the config's class-name file: the names MMEngine stored in
    the checkpoint, else an error that names the file."""
    (demo / 'data' / 'demo' / 'classnames.txt').unlink()
    with pytest.raises(FileNotFoundError, match='classnames.txt'):
        tool.main([STOP_DEMO, 'stop.pth', 'data/demo/videos/val_0000.mp4'])
    names = ['up', 'down', 'grow', 'shrink']
    save_checkpoint(
        STOP_DEMO,
        'meta.pth',
        meta=dict(dataset_meta=dict(classes=names)),
        class_names=names)
    code, out = run(tool, STOP_DEMO, 'meta.pth',
                    'data/demo/videos/val_0000.mp4')
    assert code == 0 and out['classes'] == names


def test_strict_checkpoint(tool, demo):
    state = config_model(STOP_DEMO).state_dict()
    state.pop('backbone.global_prompts')
    torch.save(dict(meta={}, state_dict=state), 'partial.pth')
    with pytest.raises(CheckpointMismatchError, match='global_prompts'):
        tool.main([STOP_DEMO, 'partial.pth', 'data/demo/videos'])


def test_closed_classifier_labels(tool, demo):
    """SSP's linear classifier has fixed classes: labels only name them."""
    save_checkpoint(SSP_DEMO, 'ssp.pth')
    video = 'data/demo/videos/val_0001.mp4'
    with pytest.raises(ValueError, match='4 fixed classes'):
        tool.main([SSP_DEMO, 'ssp.pth', video, '--labels', 'a,b'])
    code, out = run(tool, SSP_DEMO, 'ssp.pth', video, '--labels', 'w,x,y,z',
                    '--topk', '4')
    assert code == 0 and out['classes'] == ['w', 'x', 'y', 'z']
    assert sorted(p['label'] for p in out['results'][0]['predictions']) == \
        ['w', 'x', 'y', 'z']
