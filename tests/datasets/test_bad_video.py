# Copyright (c) mmstop contributors. All rights reserved.
"""on_bad_video / max_bad_fraction of the video datasets, short-video
reports."""
import shutil

import numpy as np
import pytest
from mmengine.registry import DefaultScope

from mmstop.datasets import VideoLoadError, generate_demo_dataset
from mmstop.datasets.bad_video import repeated_frames
from mmstop.registry import DATASETS

PIPELINE = [
    dict(type='DecordInit'),
    dict(type='SegmentSampleFrames', num_segments=4),
    dict(type='DecordDecode'),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
BAD = ('zero.mp4', 'truncated.mp4', 'notes.mp4')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp('demo')),
        num_classes=2,
        train_per_class=2,
        val_per_class=1,
        seed=1)


@pytest.fixture(autouse=True)
def mmaction_scope():
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


@pytest.fixture
def with_bad_files(demo, tmp_path):
    """The demo videos plus a zero-byte, a truncated and a text file."""
    videos = tmp_path / 'videos'
    shutil.copytree(demo['video_dir'], videos)
    (videos / 'zero.mp4').write_bytes(b'')
    data = (videos / 'train_0000.mp4').read_bytes()
    (videos / 'truncated.mp4').write_bytes(data[:len(data) // 3])
    (videos / 'notes.mp4').write_text('not a video\n' * 20)
    lines = open(demo['train_ann']).read().splitlines()
    lines += [f'{name} 0' for name in BAD]
    ann = tmp_path / 'train.txt'
    ann.write_text('\n'.join(lines) + '\n')
    return str(videos), str(ann), len(lines)


def build(videos, ann, **kwargs):
    return DATASETS.build(
        dict(
            type='VideoClsDataset',
            ann_file=ann,
            data_prefix=dict(video=videos),
            pipeline=PIPELINE,
            **kwargs))


class Logs:

    def __init__(self, monkeypatch):
        self.messages = []
        monkeypatch.setattr('mmstop.datasets.bad_video.print_log',
                            lambda msg, **kwargs: self.messages.append(msg))


def test_error_is_the_default(with_bad_files):
    videos, ann, n = with_bad_files
    ds = build(videos, ann)
    with pytest.raises(VideoLoadError, match=r'zero\.mp4'):
        ds[n - 3]


def test_skip_replaces_every_kind_of_bad_file_and_logs_it_once(
        with_bad_files, monkeypatch):
    videos, ann, n = with_bad_files
    logs = Logs(monkeypatch)
    ds = build(videos, ann, on_bad_video='skip', max_bad_fraction=0.5)
    np.random.seed(0)
    for _ in range(2):  # two "epochs"
        for idx in range(n - 3, n):
            sample = ds[idx]
            skipped = sample['data_samples'].metainfo['skipped_videos']
            assert skipped[0][0].endswith(BAD[idx - (n - 3)])
            assert sample['inputs'].shape[2] == 4  # a real clip instead
    reported = [m for m in logs.messages if 'skipping unreadable video' in m]
    assert len(reported) == 3  # once per file, not per epoch
    for name in BAD:
        assert sum(name in m for m in reported) == 1


def test_skip_stops_past_max_bad_fraction(with_bad_files, monkeypatch):
    videos, ann, n = with_bad_files
    Logs(monkeypatch)
    ds = build(videos, ann, on_bad_video='skip', max_bad_fraction=0.2)
    ds[n - 3]  # 1 of 7 files: fine
    with pytest.raises(
            VideoLoadError,
            match=r'2 of 7 video files could not be read, more '
            r'than max_bad_fraction=0\.2'):
        ds[n - 2]


def test_skip_does_not_apply_to_evaluation(with_bad_files):
    videos, ann, n = with_bad_files
    ds = build(videos, ann, on_bad_video='skip', test_mode=True)
    with pytest.raises(VideoLoadError, match='only applies to training'):
        ds[n - 1]


def test_bad_options(with_bad_files):
    videos, ann, _ = with_bad_files
    with pytest.raises(ValueError, match='on_bad_video'):
        build(videos, ann, on_bad_video='ignore')
    with pytest.raises(ValueError, match='max_bad_fraction'):
        build(videos, ann, max_bad_fraction=1.5)


def test_short_video_reported_once(demo, monkeypatch):
    logs = Logs(monkeypatch)
    pipeline = [dict(PIPELINE[1], num_segments=40)]  # demo clips are shorter
    ds = DATASETS.build(
        dict(
            type='VideoClsDataset',
            ann_file=demo['train_ann'],
            data_prefix=dict(video=demo['video_dir']),
            pipeline=[PIPELINE[0], *pipeline, PIPELINE[2]]))
    ds[0]
    ds[0]
    short = [m for m in logs.messages if 'fewer than its clip needs' in m]
    assert len(short) == 1
    total = ds[0]['total_frames']
    assert f'has {total} frame(s)' in short[0]
    assert f'{40 - total} frame(s) of each clip are repeats' in short[0]


def test_repeated_frames():
    assert repeated_frames(
        dict(
            frame_inds=np.array([0, 1, 2, 2, 2]), total_frames=3,
            num_clips=1)) == (2, 3)
    assert repeated_frames(
        dict(frame_inds=np.arange(8), total_frames=20, num_clips=2)) is None
    assert repeated_frames(dict(total_frames=3)) is None
