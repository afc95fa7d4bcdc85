# Copyright (c) mmstop contributors. All rights reserved.
import os.path as osp
import re
import shutil

import pytest
import torch
from mmengine.registry import DefaultScope

from mmstop.datasets import (AnnotationError, VideoClsDataset, VideoLoadError,
                             generate_demo_dataset)
from mmstop.registry import DATASETS

PIPELINE = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    return generate_demo_dataset(
        root, num_classes=3, train_per_class=2, val_per_class=1, seed=1)


@pytest.fixture(autouse=True)
def mmaction_scope():
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def build(demo, ann_file=None, **kwargs):
    cfg = dict(
        type='VideoClsDataset',
        ann_file=ann_file or demo['train_ann'],
        data_prefix=dict(video=demo['video_dir']),
        pipeline=PIPELINE)
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def write_ann(tmp_path, text, name='ann.txt'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_loads_demo_with_class_names(demo):
    ds = build(demo, classnames_file=demo['classnames_file'])
    assert isinstance(ds, VideoClsDataset)
    assert len(ds) == 6
    assert ds.metainfo['classes'] == demo['classes']
    assert ds.num_classes == 3
    sample = ds[2]
    assert sample['inputs'].shape == (1, 3, 4, 64, 64)
    assert sample['data_samples'].gt_label.tolist() == [1]
    info = ds.get_data_info(5)
    assert info['ann_line'] == 6
    assert info['filename'] == osp.join(demo['video_dir'], 'train_0005.mp4')


def test_class_names_relative_to_data_root(demo):
    ds = DATASETS.build(
        dict(
            type='VideoClsDataset',
            data_root=demo['root'],
            ann_file='val.txt',
            data_prefix=dict(video='videos'),
            classnames_file='classnames.txt',
            pipeline=PIPELINE,
            test_mode=True))
    assert ds.metainfo['classes'] == demo['classes']
    assert len(ds) == 3


def test_class_names_from_metainfo(demo, tmp_path):
    ann = write_ann(tmp_path, 'train_0000.mp4 1\n')
    ds = build(demo, ann, metainfo=dict(classes=('a', 'b')))
    assert ds.num_classes == 2
    ann = write_ann(tmp_path, 'train_0000.mp4 2\n')
    with pytest.raises(
            AnnotationError, match=r"0\.\.1 \(metainfo\['classes'\]\)"):
        build(demo, ann, metainfo=dict(classes=('a', 'b')))


def test_unknown_class_index_names_file_line_and_range(demo, tmp_path):
    ann = write_ann(
        tmp_path, 'train_0000.mp4 0\n\ntrain_0001.mp4 2\ntrain_0002.mp4 3\n')
    with pytest.raises(AnnotationError) as info:
        build(demo, ann, classnames_file=demo['classnames_file'])
    msg = str(info.value)
    assert ann in msg
    assert 'line 4' in msg  # blank line 2 is skipped but counted
    assert 'unknown class index 3' in msg
    assert '0..2' in msg and demo['classnames_file'] in msg


def test_unknown_class_index_with_num_classes(demo, tmp_path):
    ann = write_ann(tmp_path, 'train_0000.mp4 5\n')
    with pytest.raises(
            AnnotationError,
            match=r'line 1: unknown class index 5; valid class '
            r'indices are 0\.\.4 \(num_classes=5\)'):
        build(demo, ann, num_classes=5)
    # without num_classes or names only negative labels are rejected
    assert len(build(demo, ann)) == 1


@pytest.mark.parametrize('line, match', [
    ('train_0000.mp4 -1', 'unknown class index -1'),
    ('train_0000.mp4 two', "label 'two' is not an integer"),
    ('train_0000.mp4 1 2', 'expected "path label", got 3 fields'),
    ('train_0000.mp4', 'no label after'),
])
def test_malformed_lines(demo, tmp_path, line, match):
    ann = write_ann(tmp_path, 'train_0001.mp4 0\n' + line + '\n')
    with pytest.raises(AnnotationError, match=match) as info:
        build(demo, ann, num_classes=3)
    assert f'{ann}, line 2' in str(info.value)


def test_label_less_lines_in_test_mode(demo, tmp_path):
    ann = write_ann(tmp_path, 'val_0000.mp4\n')
    ds = build(demo, ann, num_classes=3, test_mode=True)
    assert ds.get_data_info(0)['label'] == -1


def test_multi_class_labels_checked(demo, tmp_path):
    ann = write_ann(tmp_path, 'train_0000.mp4 0 2\n')
    ds = build(demo, ann, num_classes=3, multi_class=True)
    assert ds.get_data_info(0)['label'].tolist() == [1.0, 0.0, 1.0]
    ann = write_ann(tmp_path, 'train_0000.mp4 0 3\n')
    with pytest.raises(AnnotationError, match='line 1: unknown class index 3'):
        build(demo, ann, num_classes=3, multi_class=True)


def test_num_classes_must_match_class_names(demo):
    with pytest.raises(
            ValueError,
            match='num_classes=4 but the class-name '
            'file .*classnames.txt lists 3 classes'):
        build(demo, classnames_file=demo['classnames_file'], num_classes=4)
    with pytest.raises(ValueError, match='not both'):
        build(
            demo,
            classnames_file=demo['classnames_file'],
            metainfo=dict(classes=('a', 'b', 'c')))


@pytest.mark.parametrize('text, match', [
    ('a\n\nb\n', r'line 2: empty class name'),
    ('a\nb\na\n', r"line 3: class name 'a' repeats line 1"),
    ('\n\n', 'holds no class names'),
])
def test_bad_class_name_file(demo, tmp_path, text, match):
    names = write_ann(tmp_path, text, 'names.txt')
    with pytest.raises(AnnotationError, match=match) as info:
        build(demo, classnames_file=names)
    assert names in str(info.value)


def test_trailing_blank_lines_in_class_names_ignored(demo, tmp_path):
    names = write_ann(tmp_path, 'x\ny\nz\n\n', 'names.txt')
    assert build(
        demo, classnames_file=names).metainfo['classes'] == ('x', 'y', 'z')


def test_missing_files(demo, tmp_path):
    with pytest.raises(FileNotFoundError, match='class-name file .*nope.txt'):
        build(demo, classnames_file=str(tmp_path / 'nope.txt'))
    with pytest.raises(
            FileNotFoundError,
            match='annotation file .*absent.txt does not exist'):
        build(demo, str(tmp_path / 'absent.txt'))


def test_missing_video_names_ann_line_and_path(demo, tmp_path):
    ann = write_ann(tmp_path, 'train_0000.mp4 0\nghost.mp4 1\n')
    with pytest.raises(FileNotFoundError) as info:
        build(demo, ann)
    msg = str(info.value)
    assert msg.startswith(ann)
    assert 'line 2: ' + osp.join(demo['video_dir'], 'ghost.mp4') in msg
    # opting out of the check defers the failure to loading, still named
    ds = build(demo, ann, check_files=False)
    with pytest.raises(VideoLoadError, match=re.escape('ghost.mp4')):
        ds[1]


def test_many_missing_videos_are_summarised(demo, tmp_path):
    ann = write_ann(tmp_path, ''.join(f'm{i}.mp4 0\n' for i in range(8)))
    with pytest.raises(
            FileNotFoundError,
            match=r'8 video file\(s\).*line 5: .*m4\.mp4 '
            r'\(and 3 more\)'):
        build(demo, ann)


@pytest.fixture
def corrupt_copy(demo, tmp_path):
    """A copy of the demo videos with one garbage and one truncated file."""
    video_dir = tmp_path / 'videos'
    shutil.copytree(demo['video_dir'], video_dir)
    (video_dir / 'train_0001.mp4').write_bytes(b'not a video' * 50)
    data = (video_dir / 'train_0003.mp4').read_bytes()
    (video_dir / 'train_0003.mp4').write_bytes(data[:len(data) // 3])
    return dict(demo, video_dir=str(video_dir))


@pytest.mark.parametrize('idx', [1, 3])
def test_corrupt_video_error_names_file_and_cause(corrupt_copy, idx):
    ds = build(corrupt_copy)
    ds[0]  # intact files still load
    with pytest.raises(VideoLoadError) as info:
        ds[idx]
    msg = str(info.value)
    path = osp.join(corrupt_copy['video_dir'], f'train_{idx:04d}.mp4')
    assert f"video '{path}'" in msg
    assert f'line {idx + 1} of {corrupt_copy["train_ann"]}' in msg
    assert 'DecordInit failed with RuntimeError' in msg  # the cause
    assert isinstance(info.value.__cause__, RuntimeError)


def test_corrupt_video_error_survives_dataloader_workers(corrupt_copy):
    ds = build(corrupt_copy)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(ds, [1]),
        batch_size=1,
        num_workers=1,
        collate_fn=lambda batch: batch)
    with pytest.raises(VideoLoadError, match=r'train_0001\.mp4.*DecordInit'):
        next(iter(loader))
