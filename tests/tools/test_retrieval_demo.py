# Copyright (c) mmstop contributors. All rights reserved.
"""tools/retrieval_demo.py: embed / query / query-video on the generated demo
videos with a randomly initialised tiny STOP retrieval model saved as an
MMEngine-style checkpoint; clear errors for bad input."""
import os.path as osp
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from mmstop.datasets import generate_demo_dataset
from mmstop.registry import DATASETS, MODELS

CONFIG = osp.join(REPO_ROOT, 'configs', 'stop_clip_retrieval_demo.py')
BATCH = 4

# many small ops: one intra-op thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('tools/retrieval_demo.py')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=4,
        train_per_class=1,
        val_per_class=1,
        seed=0)


@pytest.fixture(scope='module')
def model_and_ckpt(tmp_path_factory):
    """A random tiny model of the demo config and its checkpoint file."""
    init_default_scope('mmaction')
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    # move the prompts off their init so a wrong load would show
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    path = str(tmp_path_factory.mktemp('ckpt') / 'random_tiny.pth')
    torch.save(dict(meta=dict(epoch=0), state_dict=model.state_dict()), path)
    return model.eval(), cfg, path


@pytest.fixture(scope='module')
def embedded(tool, demo, model_and_ckpt, tmp_path_factory):
    _, _, ckpt = model_and_ckpt
    out = str(tmp_path_factory.mktemp('feats') / 'sub' / 'videos.pt')
    tool.main([
        'embed', CONFIG, ckpt, demo['video_dir'], '--out', out, '--batch-size',
        str(BATCH), '--device', 'cpu'
    ])
    return out


def test_embed_writes_features_of_the_folder(embedded, demo, model_and_ckpt):
    model, cfg, ckpt = model_and_ckpt
    data = torch.load(embedded, weights_only=False)
    names = sorted(f'{s}_{i:04d}.mp4' for s in ('train', 'val')
                   for i in range(4))
    assert data['files'] == names
    feats = data['video_features']
    assert feats.shape == (8, 64) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(8))
    assert data['batch_size'] == BATCH and data['batch_dependent']
    assert data['checkpoint'] == osp.abspath(ckpt)
    assert data['config'] == CONFIG
    assert (data['num_frames'], data['context_length']) == (8, 32)
    assert 'STOPSimilarity' in data['config_text']

    # the val videos form the second batch of 4 (sorted names): their
    # features equal the model's predict() on the config's test dataset
    ds_cfg = cfg.test_dataloader.dataset.to_dict()
    ds_cfg.update(
        ann_file=demo['captions_val'],
        data_prefix=dict(video=demo['video_dir']))
    dataset = DATASETS.build(ds_cfg)
    batch = pseudo_collate([dataset[i] for i in range(4)])
    assert [s.filename for s in batch['data_samples']
            ] == [osp.join(demo['video_dir'], n) for n in names[4:]]
    with torch.no_grad():
        out = model.test_step(batch)
    want = F.normalize(torch.stack([o.video_feature for o in out]), dim=-1)
    torch.testing.assert_close(feats[4:], want, rtol=1e-4, atol=1e-5)


def test_query_prints_top_k_videos(tool, embedded, model_and_ckpt, capsys):
    model = model_and_ckpt[0]
    texts = ['the red square quickly moves up', 'a circle growing']
    results = tool.main(
        ['query', embedded, *texts, '--top-k', '3', '--device', 'cpu'])
    out = capsys.readouterr().out
    data = torch.load(embedded, weights_only=False)
    ids = tool.text_tokenizer(Config.fromfile(CONFIG)).encode(texts)
    with torch.no_grad():
        t = F.normalize(model.encode_text(ids), dim=-1)
    scores = t @ data['video_features'].t()
    for text, ranked, row in zip(texts, results, scores):
        assert len(ranked) == 3
        order = torch.argsort(row, descending=True)[:3].tolist()
        assert [name
                for name, _ in ranked] == [data['files'][i] for i in order]
        assert [s for _, s in ranked] == pytest.approx(
            row[order].tolist(), abs=1e-5)
        assert f'query: {text!r}' in out
        for rank, (name, score) in enumerate(ranked, 1):
            assert f'{rank:>3}. {score:+.4f}  {name}' in out
    # top-k larger than the gallery: all videos
    assert len(tool.main(['query', embedded, 'x', '--top-k', '50'])[0]) == 8


def test_query_video_stored_and_external(tool, embedded, demo, tmp_path,
                                         capsys):
    captions = tmp_path / 'captions.txt'
    captions.write_text('a red square moving up\n\na circle shrinking\n'
                        'something moves down\n')
    ranked = tool.main([
        'query-video', embedded, 'val_0000.mp4', '--captions',
        str(captions), '--top-k', '2'
    ])
    out = capsys.readouterr().out
    assert 'video: val_0000.mp4 (stored feature, batch size 4)' in out
    assert len(ranked) == 2
    assert ranked[0][1] >= ranked[1][1]
    assert {c
            for c, _ in ranked} <= {
                'a red square moving up', 'a circle shrinking',
                'something moves down'
            }
    # the same video outside the folder is encoded alone, with a note
    other = tmp_path / 'copy.mp4'
    shutil.copy(osp.join(demo['video_dir'], 'val_0000.mp4'), other)
    alone = tool.main([
        'query-video', embedded,
        str(other), '--captions',
        str(captions), '--top-k', '3'
    ])
    out = capsys.readouterr().out
    assert 'encoded alone, batch of 1' in out
    assert 'depend on the batch' in out
    assert len(alone) == 3


def test_clear_errors(tool, embedded, demo, model_and_ckpt, tmp_path, capsys):
    ckpt = model_and_ckpt[2]
    empty = tmp_path / 'empty'
    empty.mkdir()
    cases = [
        (['embed', CONFIG, ckpt,
          str(tmp_path / 'missing'), '--out',
          'x.pt'], 'video folder .*missing does not exist'),
        (['embed', CONFIG, ckpt,
          str(empty), '--out', 'x.pt'], 'no video files'),
        ([
            'embed', CONFIG,
            str(tmp_path / 'none.pth'), demo['video_dir'], '--out', 'x.pt'
        ], 'checkpoint .*none.pth does not exist'),
        ([
            'embed',
            str(tmp_path / 'nocfg.py'), ckpt, demo['video_dir'], '--out',
            'x.pt'
        ], 'config file .*nocfg.py does not exist'),
        (['query', str(tmp_path / 'none.pt'),
          'text'], 'features file .*none.pt does not exist'),
        ([
            'query', embedded, 'text', '--checkpoint',
            str(tmp_path / 'gone.pth')
        ], 'checkpoint .*gone.pth does not'),
        ([
            'query-video', embedded, 'val_0000.mp4', '--captions',
            str(tmp_path / 'nocaps.txt')
        ], 'captions file .*nocaps.txt'),
        ([
            'query-video', embedded, 'nothere.mp4', '--captions',
            demo['classnames_file']
        ], 'nothere.mp4 is neither a file of the '
         'embedded folder'),
    ]
    for argv, pattern in cases:
        with pytest.raises(SystemExit) as exc:
            tool.main(argv)
        assert exc.value.code == 2, argv
        err = capsys.readouterr().err
        assert re.search(pattern, err), (argv, err)
        assert 'error:' in err
    # a file that is not a features file
    bogus = tmp_path / 'bogus.pt'
    torch.save({'a': 1}, bogus)
    with pytest.raises(SystemExit):
        tool.main(['query', str(bogus), 'text'])
    assert 'not a features file' in capsys.readouterr().err
    # a video that does not decode
    bad = tmp_path / 'videos'
    bad.mkdir()
    (bad / 'broken.mp4').write_bytes(b'not a video')
    with pytest.raises(SystemExit):
        tool.main(
            ['embed', CONFIG, ckpt,
             str(bad), '--out',
             str(tmp_path / 'y.pt')])
    assert re.search('could not read video .*broken.mp4',
                     capsys.readouterr().err)


def test_embed_skips_and_lists_unreadable_files(tool, demo, model_and_ckpt,
                                                tmp_path, capsys):
    folder = tmp_path / 'mixed'
    folder.mkdir()
    for name in ('val_0000.mp4', 'val_0001.mp4'):
        shutil.copy(osp.join(demo['video_dir'], name), folder / name)
    (folder / 'empty.mp4').write_bytes(b'')
    (folder / 'notes.avi').write_text('not a video')
    out = tmp_path / 'mixed.pt'
    data = tool.main([
        'embed', CONFIG, model_and_ckpt[2],
        str(folder), '--out',
        str(out), '--batch-size', '2'
    ])
    printed = capsys.readouterr().out
    assert data['files'] == ['val_0000.mp4', 'val_0001.mp4']
    assert data['video_features'].shape[0] == 2
    assert [name for name, _ in data['skipped']] == ['empty.mp4', 'notes.avi']
    assert 'skipped 2 of 4 video(s) that could not be read' in printed
    assert '  empty.mp4' in printed and '  notes.avi' in printed
    assert torch.load(out, weights_only=True)['files'] == data['files']


@pytest.mark.parametrize('text', ['', '   '])
def test_empty_query_is_an_error(tool, embedded, text, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(['query', embedded, 'a circle', text])
    assert exc.value.code == 2
    assert 'query text 2 is empty' in capsys.readouterr().err


def test_cfg_options_rederive_variables(tool):
    """--cfg-options num_frames=4 reaches the backbone and the sampler."""
    cfg = tool.load_config(
        osp.join(REPO_ROOT, 'configs', 'stop_clip_retrieval_demo.py'),
        dict(num_frames=4))
    assert cfg.model.backbone.num_frames == 4
    samplers = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] == 'SegmentSampleFrames'
    ]
    assert samplers and all(t['num_segments'] == 4 for t in samplers)
