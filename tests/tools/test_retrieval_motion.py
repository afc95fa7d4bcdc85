# Copyright (c) mmstop contributors. All rights reserved.
"""configs/stop_clip_retrieval_motion.py: the retrieval demo on mmstop's
tiny pretrained CLIP (checkpoints/tiny_clip_shapes.pth) loads the shipped
weights, and, trained briefly on captions of clips whose colour and shape
are drawn per video, ranks the clips of a queried colour first (the tiny
CLIP was pretrained on colour words)."""
import json
import os.path as osp
import sys

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmstop.datasets import generate_demo_dataset
from mmstop.datasets.demo import COLOURS
from mmstop.registry import MODELS
from mmstop.utils.checkpoint import read_checkpoint

CONFIG = osp.join(REPO_ROOT, 'configs', 'stop_clip_retrieval_motion.py')

pytestmark = pytest.mark.usefixtures('one_thread')


def test_the_config_loads_the_shipped_clip_weights():
    """Every tensor of the shipped checkpoint reaches the backbone (the
    loader is strict: a missing or misshapen tensor raises)."""
    init_default_scope('mmaction')
    cfg = Config.fromfile(CONFIG)
    assert osp.isfile(cfg.model.backbone.pretrained)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = read_checkpoint(cfg.model.backbone.pretrained)
    clip = model.backbone.clip
    torch.testing.assert_close(clip.visual.proj, state['visual.proj'].float())
    torch.testing.assert_close(clip.text_projection,
                               state['text_projection'].float())


def colour_of(entry):
    words = entry['captions'][0].split()
    return next(w for w in words if w in COLOURS)


@pytest.mark.slow
def test_trained_briefly_it_ranks_the_queried_colour_first(
        run_tool, load_tool, tmp_path):
    demo = generate_demo_dataset(
        str(tmp_path / 'data'),
        num_classes=6,
        train_per_class=16,
        val_per_class=1,
        size=32,
        appearance='random',
        seed=0)
    options = []
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val'), ('test_dataloader',
                                                      'val')):
        options += [
            f'{loader}.dataset.ann_file={demo["captions_" + split]}',
            f'{loader}.dataset.data_prefix.video={demo["video_dir"]}',
        ]
    work = str(tmp_path / 'work')
    run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'), CONFIG, '--work-dir', work,
        '--cfg-options', 'train_cfg.val_interval=100', *options
    ], tmp_path / 'train.log')
    checkpoint = osp.join(work, 'epoch_5.pth')

    tool = load_tool('tools/retrieval_demo.py')
    features = str(tmp_path / 'videos.pt')
    tool.main(
        ['embed', CONFIG, checkpoint, demo['video_dir'], '--out', features])
    with open(demo['captions_train']) as f:
        entries = json.load(f)
    with open(demo['captions_val']) as f:
        entries += json.load(f)
    colours = {e['filename']: colour_of(e) for e in entries}
    queried = sorted(set(colours.values()))
    results = tool.main(['query', features] +
                        [f'a {c} square' for c in queried] + ['--top-k', '5'])
    hits = [
        colours[name] == colour for colour, ranked in zip(queried, results)
        for name, _ in ranked
    ]
    precision = sum(hits) / len(hits)
    chance = max(list(colours.values()).count(c)
                 for c in queried) / len(colours)
    # at least twice the best a query that ignores its colour word could do
    assert precision >= 2 * chance, (precision, chance)
