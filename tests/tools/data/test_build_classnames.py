# Copyright (c) mmstop contributors. All rights reserved.
import json
import os.path as osp
import runpy

import pytest

from mmstop.datasets import load_class_names

TOOL = runpy.run_path(
    osp.join(
        osp.dirname(__file__), '..', '..', '..', 'tools', 'data',
        'build_classnames.py'),
    run_name='build_classnames')


def test_ucf101_and_hmdb51_class_index(tmp_path):
    src = tmp_path / 'classInd.txt'
    src.write_text('2 BabyCrawling\n1 ApplyEyeMakeup\n3 YoYo\n')
    dst = tmp_path / 'out' / 'classnames.txt'
    TOOL['main'](['ucf101', str(src), str(dst)])
    assert load_class_names(
        str(dst)) == ['apply eye makeup', 'baby crawling', 'yo yo']
    src.write_text('1 brush_hair\n2 cartwheel\n3 shoot_ball\n')
    TOOL['main'](['hmdb51', str(src), str(dst)])
    assert load_class_names(
        str(dst)) == ['brush hair', 'cartwheel', 'shoot ball']


def test_sthv2_labels(tmp_path):
    src = tmp_path / 'labels.json'
    src.write_text(
        json.dumps({
            'Pushing something from left to right': '1',
            'Approaching something with your camera': '0',
            'Putting [something] onto [something]': '2'
        }))
    dst = tmp_path / 'classnames.txt'
    TOOL['main'](['sthv2', str(src), str(dst)])
    assert load_class_names(str(dst)) == [
        'Approaching something with your camera',
        'Pushing something from left to right',
        'Putting something onto something'
    ]


def test_errors_name_the_file(tmp_path):
    src = tmp_path / 'classInd.txt'
    src.write_text('1 A\n3 C\n')
    with pytest.raises(ValueError, match=r'classInd.txt.*missing \[2\]'):
        TOOL['main'](['ucf101', str(src), str(tmp_path / 'x.txt')])
    src.write_text('1 A extra\n')
    with pytest.raises(ValueError, match='line 1'):
        TOOL['main'](['ucf101', str(src), str(tmp_path / 'x.txt')])
    with pytest.raises(SystemExit, match='nope.txt not found'):
        TOOL['main'](['ucf101', str(tmp_path / 'nope.txt'), 'x'])
