# Copyright (c) mmstop contributors. All rights reserved.
"""MMAction2's own tools on mmstop configs and checkpoints (issue 11):
``clip_feature_extraction.py`` on a STOP recognizer, ``check_videos.py`` on
mmstop's datasets (through ``tools/analysis/check_videos.py``),
``confusion_matrix.py`` and ``publish_model.py`` (through
``tools/misc/run_mmaction_tool.py``), and MMAction2's ``RetrievalMetric`` on
a STOP retrieval model."""
import glob
import os.path as osp
import pickle
import runpy
import sys

import numpy as np
import pytest
import torch
from helpers.configs import config_model, config_path
from mmaction.evaluation import RetrievalMetric
from mmaction.structures import ActionDataSample
from mmengine.logging import MessageHub

from mmstop.datasets.demo import generate_demo_dataset
from mmstop.evaluation import VideoTextRetrievalMetric
from mmstop.utils.mmaction_tools import (resolve_mmaction_tool,
                                         run_mmaction_tool)

pytestmark = pytest.mark.usefixtures('one_thread')

STOP_DEMO = config_path('stop_clip_demo.py')


@pytest.fixture
def own_loggers():
    """The tools build MMEngine runners, whose logger becomes the current
    one (its file possibly in a directory the tool deletes): restore the
    loggers of before afterwards, as if the tool had run in its own
    process."""
    from mmengine.logging import MMLogger
    saved = dict(MMLogger._instance_dict)
    yield
    for name, logger in list(MMLogger._instance_dict.items()):
        if name not in saved:
            for handler in logger.handlers:
                handler.close()
    MMLogger._instance_dict.clear()
    MMLogger._instance_dict.update(saved)


@pytest.fixture
def demo_dir(tmp_path, monkeypatch, own_loggers):
    """A 4-video demo dataset at ``data/demo`` of the working directory
    (where the demo configs look) and an MMEngine checkpoint of the STOP
    demo model (message hub included)."""
    monkeypatch.chdir(tmp_path)
    generate_demo_dataset(
        'data/demo', num_classes=4, train_per_class=1, val_per_class=1)
    model = config_model('stop_clip_demo.py')
    hub = MessageHub.get_instance('test_mmaction2_tools')
    hub.update_scalar('train/loss', 1.0)
    torch.save(
        dict(
            meta=dict(epoch=1),
            state_dict=model.state_dict(),
            message_hub=hub.state_dict(),
            optimizer={}), 'ckpt.pth')
    return tmp_path


def test_clip_feature_extraction_on_stop(demo_dir, monkeypatch):
    """It swaps the text head for MMAction2's FeatureHead, which used to
    fail with "'FeatureHead' object has no attribute 'class_token_ids'"."""
    tool = resolve_mmaction_tool('misc/clip_feature_extraction.py')
    monkeypatch.setattr(sys, 'argv', [
        tool, STOP_DEMO, 'ckpt.pth', 'feats', '--video-list',
        'data/demo/val.txt'
    ])
    runpy.run_path(tool, run_name='__main__')
    files = sorted(glob.glob('feats/*.mp4.pkl'))
    assert [osp.basename(f)
            for f in files] == [f'val_000{i}.mp4.pkl' for i in range(4)]
    with open(files[0], 'rb') as f:
        feature = pickle.load(f)
    # the STOP video feature (embed_dims 64), averaged over the two views
    assert tuple(feature.shape) == (64, )


def test_check_videos_on_mmstop_datasets(demo_dir, load_tool, capsys):
    tool = load_tool('tools/analysis/check_videos.py')
    videos = demo_dir / 'data' / 'demo' / 'videos'
    (videos / 'val_0001.mp4').write_bytes(b'not a video')
    (videos / 'val_0002.mp4').unlink()
    tool.main([STOP_DEMO, '--split', 'val', '--output-file', 'bad.txt'])
    bad = (demo_dir / 'bad.txt').read_text().split()
    assert sorted(osp.basename(p)
                  for p in bad) == ['val_0001.mp4', 'val_0002.mp4']
    assert 'Checked 4 videos, 2 are corrupted/missing' in \
        capsys.readouterr().out
    # the video-text dataset (JSON captions) of the retrieval demo
    tool.main([
        config_path('stop_clip_retrieval_demo.py'), '--split', 'test',
        '--output-file', 'bad_text.txt'
    ])
    bad = (demo_dir / 'bad_text.txt').read_text().split()
    assert sorted(osp.basename(p)
                  for p in bad) == ['val_0001.mp4', 'val_0002.mp4']


def test_confusion_matrix(demo_dir):
    """``import mmaction.models`` (which the tool does first) needs
    mmstop's drn shim."""
    run_mmaction_tool('confusion_matrix',
                      [STOP_DEMO, 'ckpt.pth', '--out', 'cm.pkl'])
    with open('cm.pkl', 'rb') as f:
        cm = pickle.load(f)
    assert tuple(cm.shape) == (4, 4) and int(cm.sum()) == 4


def test_publish_model(demo_dir):
    """Its bare torch.load refuses MMEngine checkpoints (message hub) under
    torch >= 2.6 unless the checkpoint types are allowed."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load('ckpt.pth')
    run_mmaction_tool('deployment/publish_model.py',
                      ['ckpt.pth', 'published.pth'])
    [published] = glob.glob('published_*-*.pth')
    state = torch.load(published, weights_only=True)
    assert set(state) == {'meta', 'state_dict'}
    assert state['state_dict'].keys() == torch.load(
        'ckpt.pth', weights_only=False)['state_dict'].keys()


def test_mmaction2_retrieval_metric_reads_stop_features():
    """STOPSimilarity.predict also writes the "features" field of
    MMAction2's RetrievalMetric (KeyError: 'features' before)."""
    model = config_model('stop_clip_retrieval_demo.py').eval()
    samples = []
    for i in range(4):
        sample = ActionDataSample(metainfo=dict(sample_idx=i))
        sample.text_ids = torch.randint(1, 400, (1, 32))
        sample.text_ids[0, 5] = 49407
        samples.append(sample)
    with torch.no_grad():
        out = model.predict(torch.randn(4, 8, 3, 32, 32), samples)
    dicts = [s.to_dict() for s in out]
    ours, theirs = VideoTextRetrievalMetric(), RetrievalMetric()
    ours.process(None, dicts)
    theirs.process(None, dicts)
    r1 = ours.compute_metrics(ours.results)
    np.testing.assert_allclose(
        theirs.compute_metrics(theirs.results)['R1'], r1['t2v/R@1'])
    # several captions: no "features" (MMAction2's metric takes one)
    sample = ActionDataSample(metainfo=dict(sample_idx=0))
    sample.text_ids = torch.randint(1, 400, (2, 32))
    sample.text_ids[:, 5] = 49407
    with torch.no_grad():
        [out] = model.predict(torch.randn(1, 8, 3, 32, 32), [sample])
    assert 'features' not in out and out.text_feature.shape == (2, 64)
