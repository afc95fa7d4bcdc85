# Copyright (c) mmstop contributors. All rights reserved.
import json

import cv2
import numpy as np
import pytest
import torch

from mmstop.datasets import VideoTextRetrievalDataset
from mmstop.registry import DATASETS, METRICS, MODELS, TRANSFORMS

CAPTIONS = {
    'a.mp4': [
        'a red square moves right', 'something red goes right',
        'a square slides'
    ],
    'b.mp4': ['a blue circle falls'],
    'sub/c.mp4': ['green dot jumps', 'a dot bounces up and down'],
}


def _write_video(path, num_frames=10, value=60):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'mp4v'), 8.0, (64, 64))
    for i in range(num_frames):
        frame = np.full((64, 64, 3), value, np.uint8)
        frame[:, 4 * i:4 * i + 8] = 255
        writer.write(frame)
    writer.release()


@pytest.fixture
def data(tmp_path):
    videos = tmp_path / 'videos'
    for i, name in enumerate(CAPTIONS):
        _write_video(videos / name, num_frames=8 + 2 * i, value=40 * i)
    entries = [dict(filename=k, captions=v) for k, v in CAPTIONS.items()]
    entries[1]['video_id'] = 'vid_b'
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(entries))
    return dict(root=tmp_path, videos=str(videos), ann=str(ann))


def _pipeline(t=4, test_mode=False, context_length=16):
    cfgs = [
        dict(type='DecordInit'),
        dict(type='SegmentSampleFrames', num_segments=t, test_mode=test_mode),
        dict(type='DecordDecode'),
        dict(type='Resize', scale=(-1, 40)),
        dict(type='CenterCrop', crop_size=32),
        dict(type='FormatShape', input_format='NCHW'),
        dict(type='TokenizeText', context_length=context_length),
        dict(type='PackVideoTextInputs'),
    ]
    return [TRANSFORMS.build(c) for c in cfgs]


def _dataset(data, pipeline=None, **kwargs):
    return DATASETS.build(
        dict(
            type='VideoTextRetrievalDataset',
            ann_file=data['ann'],
            data_prefix=dict(video=data['videos']),
            pipeline=_pipeline() if pipeline is None else pipeline,
            **kwargs))


def test_random_caption_mode_draws_all_captions(data):
    ds = _dataset(data)
    assert ds.caption_mode == 'random' and len(ds) == 3
    np.random.seed(0)
    seen = set()
    for _ in range(30):
        info = ds.get_data_info(0)
        assert len(info['text']) == 1
        assert info['text'][0] == CAPTIONS['a.mp4'][info['caption_index']]
        seen.add(info['caption_index'])
    assert seen == {0, 1, 2}
    out = ds[2]
    assert out['inputs'].shape == (4, 3, 32, 32)
    sample = out['data_samples']
    assert sample.text_ids.shape == (1, 16)
    assert sample.text_ids.dtype == torch.long
    assert sample.video_id == 'c' and sample.video_index == 2
    assert sample.sample_idx == 2
    assert sample.text[0] in CAPTIONS['sub/c.mp4']
    assert sample.filename.endswith('sub/c.mp4')
    assert ds.get_data_info(1)['video_id'] == 'vid_b'


def test_unfold_mode_one_sample_per_caption(data):
    ds = _dataset(data, caption_mode='unfold')
    assert len(ds) == 6
    infos = [ds.get_data_info(i) for i in range(6)]
    assert [i['text'][0] for i in infos] == sum(CAPTIONS.values(), [])
    assert [i['video_index'] for i in infos] == [0, 0, 0, 1, 2, 2]
    assert [i['caption_index'] for i in infos] == [0, 1, 2, 0, 0, 1]
    assert ds.get_text_to_video().tolist() == [0, 0, 0, 1, 2, 2]


def test_test_mode_all_captions(data):
    ds = _dataset(data, pipeline=_pipeline(test_mode=True), test_mode=True)
    assert ds.caption_mode == 'all' and len(ds) == 3
    tok = TRANSFORMS.build(dict(type='TokenizeText', context_length=16))
    for i, caps in enumerate(CAPTIONS.values()):
        sample = ds[i]['data_samples']
        assert sample.text == caps
        assert torch.equal(sample.text_ids, tok.encode(caps))
    assert ds.get_text_to_video().tolist() == [0, 0, 0, 1, 2, 2]
    # test-mode sampling is deterministic
    assert torch.equal(ds[0]['inputs'], ds[0]['inputs'])
    with pytest.raises(ValueError, match="'random'"):
        _dataset(data).get_text_to_video()


def test_paragraph_mode(data):
    ds = _dataset(data, test_mode=True, paragraph=True)
    assert ds.get_data_info(0)['text'] == [' '.join(CAPTIONS['a.mp4'])]
    assert ds.get_text_to_video().tolist() == [0, 1, 2]
    # sentences are stripped before joining
    entries = [dict(filename='a.mp4', captions=['One.', '  Two. ', ' Three.'])]
    ann = data['root'] / 'para.json'
    ann.write_text(json.dumps(entries))
    ds = VideoTextRetrievalDataset(
        str(ann),
        _pipeline(),
        data_prefix=dict(video=data['videos']),
        paragraph=True)
    assert ds.get_data_info(0)['text'] == ['One. Two. Three.']


def test_missing_video_names_file_and_path(data):
    entries = [dict(filename=k, captions=v) for k, v in CAPTIONS.items()]
    entries.append(dict(filename='gone.mp4', captions=['x']))
    ann = data['root'] / 'missing.json'
    ann.write_text(json.dumps(entries))
    with pytest.raises(FileNotFoundError) as err:
        VideoTextRetrievalDataset(
            str(ann), [], data_prefix=dict(video=data['videos']))
    msg = str(err.value)
    assert str(ann) in msg and 'gone.mp4' in msg and 'entry 3' in msg
    assert '1 of 4' in msg
    # check_videos=False defers the problem to loading time, still named
    ds = VideoTextRetrievalDataset(
        str(ann),
        _pipeline(),
        data_prefix=dict(video=data['videos']),
        check_videos=False)
    from mmstop.datasets import VideoLoadError
    with pytest.raises(VideoLoadError, match='gone.mp4.*entry 3'):
        ds[3]


def test_corrupt_video_names_file(data):
    bad = data['root'] / 'videos' / 'bad.mp4'
    bad.write_bytes(b'not a video at all' * 10)
    ann = data['root'] / 'bad.json'
    ann.write_text(json.dumps([dict(filename='bad.mp4', captions=['x'])]))
    ds = VideoTextRetrievalDataset(
        str(ann), _pipeline(), data_prefix=dict(video=data['videos']))
    from mmstop.datasets import VideoLoadError
    with pytest.raises(VideoLoadError, match=r'bad\.mp4.*bad\.json'):
        ds[0]


def test_empty_caption_error_and_skip(data, monkeypatch):
    entries = [
        dict(filename='a.mp4', captions=['fine', '   ']),
        dict(filename='b.mp4', captions=['']),
        dict(filename='sub/c.mp4', captions=['ok']),
    ]
    ann = data['root'] / 'empty.json'
    ann.write_text(json.dumps(entries))
    with pytest.raises(ValueError) as err:
        VideoTextRetrievalDataset(
            str(ann), [], data_prefix=dict(video=data['videos']))
    msg = str(err.value)
    assert str(ann) in msg and 'entry 0' in msg and "'a.mp4'" in msg
    assert 'caption 1 is empty' in msg
    messages = []
    import mmstop.datasets.video_text_dataset as mod
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    ds = VideoTextRetrievalDataset(
        str(ann), [],
        data_prefix=dict(video=data['videos']),
        empty_caption='skip',
        test_mode=True)
    assert len(ds) == 2
    assert [ds.get_data_info(i)['text'] for i in range(2)] == [['fine'],
                                                               ['ok']]
    assert len(messages) == 1
    assert 'skipped 2 empty caption(s)' in messages[0]
    assert 'dropped 1 of 3 video(s)' in messages[0] and 'b.mp4' in messages[0]
    # a video with an empty caption list
    ann.write_text(json.dumps([dict(filename='a.mp4', captions=[])]))
    with pytest.raises(ValueError, match='has no caption'):
        VideoTextRetrievalDataset(
            str(ann), [], data_prefix=dict(video=data['videos']))


def test_over_long_caption_truncated_and_counted(data, monkeypatch):
    long = ' '.join(['word'] * 40)
    ann = data['root'] / 'long.json'
    ann.write_text(
        json.dumps([dict(filename='a.mp4', captions=[long, 'short one'])]))
    messages = []
    import mmstop.datasets.transforms.text_tokenize as mod
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    ds = VideoTextRetrievalDataset(
        str(ann),
        _pipeline(test_mode=True, context_length=8),
        data_prefix=dict(video=data['videos']),
        test_mode=True)
    sample = ds[0]['data_samples']
    assert sample.text_ids.shape == (2, 8)
    assert sample.text_ids[0, -1] == 49407 and sample.text_truncated == 1
    assert len(messages) == 1 and '1 caption(s)' in messages[0]
    assert 'a.mp4' in messages[0]


@pytest.mark.parametrize('content,match', [
    ({
        'a': 1
    }, 'must be a list of strings'),
    ([['a.mp4']], 'expected an object'),
    ([dict(captions=['x'])], '"filename" must be'),
    ([dict(filename='a.mp4', captions='one string')], 'list of strings'),
    ([dict(filename='a.mp4', captions=['ok', 3])], 'caption 1 must be'),
    ([
        dict(filename='a.mp4', captions=['x']),
        dict(filename='a.mp4', captions=['y'])
    ], 'listed again'),
    ([dict(filename='a.mp4', captions=['x'], text='y')], 'set by the dataset'),
    ([dict(filename='a.mp4', captions=['x'], start_sec=3, end_sec=2)
      ], 'must be < end_sec'),
    ('"just a string"', 'expected a JSON list'),
])
def test_bad_annotation(data, content, match):
    ann = data['root'] / 'bad_ann.json'
    ann.write_text(
        content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=match) as err:
        VideoTextRetrievalDataset(
            str(ann), [], data_prefix=dict(video=data['videos']))
    assert str(ann) in str(err.value)


def test_mmaction_dict_format_and_time_window(data):
    ann = data['root'] / 'mma.json'
    ann.write_text(json.dumps({'b.mp4': ['one', 'two']}))
    ds = VideoTextRetrievalDataset(
        str(ann), [], data_prefix=dict(video=data['videos']), test_mode=True)
    assert ds.get_data_info(0)['text'] == ['one', 'two']
    ann.write_text(
        json.dumps([dict(filename='sub/c.mp4', captions=['x'], end_sec=0.5)]))
    ds = VideoTextRetrievalDataset(
        str(ann),
        _pipeline(t=3, test_mode=True),
        data_prefix=dict(video=data['videos']),
        test_mode=True)
    info = ds.get_data_info(0)
    assert info['end_sec'] == 0.5
    # 12 frames at 8 fps, window ends at frame int(0.5 * 8) = 4: 5 frames,
    # tick 5/3 -> int(0.83), int(2.5), int(4.17)
    sampler = TRANSFORMS.build(
        dict(type='SegmentSampleFrames', num_segments=3, test_mode=True))
    out = sampler(dict(info, total_frames=12, avg_fps=8.0))
    assert out['frame_inds'].tolist() == [0, 2, 4]
    assert ds[0]['inputs'].shape == (3, 3, 32, 32)


def test_contract_through_preprocessor_and_metric(data):
    """Batch -> ActionDataPreprocessor -> toy model features -> metric."""
    from mmengine.dataset import pseudo_collate
    ds = _dataset(data, pipeline=_pipeline(test_mode=True), test_mode=True)
    batch = pseudo_collate([ds[i] for i in range(3)])
    pre = MODELS.build(
        dict(
            type='ActionDataPreprocessor',
            mean=[122.771, 116.746, 104.093],
            std=[68.500, 66.632, 70.323],
            format_shape='NCHW'))
    data_out = pre(batch, training=False)
    inputs, samples = data_out['inputs'], data_out['data_samples']
    assert inputs.shape == (3, 4, 3, 32, 32) and inputs.dtype == torch.float32
    text_ids = torch.cat([s.text_ids for s in samples])
    assert text_ids.shape == (6, 16)
    counts = [s.text_ids.shape[0] for s in samples]
    assert counts == [3, 1, 2]
    # toy "predict": video feature = one-hot of the video; caption feature
    # = one-hot of its video plus a caption-specific perturbation
    for i, s in enumerate(samples):
        s.set_field(torch.eye(4)[i], 'video_feature')
        s.set_field(
            torch.eye(4)[i].repeat(counts[i], 1) +
            0.1 * torch.rand(counts[i], 4), 'text_feature')
    metric = METRICS.build(dict(type='VideoTextRetrievalMetric'))
    metric.process(batch, [s.to_dict() for s in samples])
    # the metric rebuilds the dataset's caption -> video mapping
    _, _, t2v = metric.assemble(metric.results)
    assert t2v.tolist() == ds.get_text_to_video().tolist()
    out = metric.evaluate(3)
    assert out['retrieval/t2v/R@1'] == 100.0
    assert out['retrieval/v2t/R@1'] == 100.0
    assert out['retrieval/t2v/MnR'] == 1.0


def test_skip_bad_video_in_retrieval_training(data):
    from pathlib import Path
    Path(data['videos'], 'b.mp4').write_bytes(b'')
    ds = _dataset(data, on_bad_video='skip', max_bad_fraction=0.5)
    np.random.seed(0)
    sample = ds[1]
    skipped = sample['data_samples'].metainfo['skipped_videos']
    assert skipped[0][0].endswith('b.mp4')
    assert sample['data_samples'].metainfo['filename'] != skipped[0][0]
    with pytest.raises(Exception, match='b.mp4'):
        _dataset(data)[1]  # on_bad_video='error', the default
