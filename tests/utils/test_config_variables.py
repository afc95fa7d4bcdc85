# Copyright (c) mmstop contributors. All rights reserved.
"""mmstop.utils.config: overridden top-level variables re-derive the fields
computed from them in every file of the inheritance chain, while every other
change made after parsing is kept."""
import pytest
from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.config.utils import RemoveAssignFromAST

from mmstop.utils import parse_config, resolve_config

BASE = """
num_classes = 4
size = 64
model = dict(
    head=dict(num_classes=num_classes, in_channels=8),
    mixup=dict(num_classes=num_classes),
    sizes=[size, size])
pipeline = [dict(type='Resize', scale=(-1, size)), dict(type='Flip')]
"""
CHILD = """
_base_ = ['./base.py']
size = 32
short = size * 5 // 4
pipeline = [dict(type='Resize', scale=(-1, short))]
work_dir = 'work'
"""


@pytest.fixture
def child(tmp_path):
    (tmp_path / 'base.py').write_text(BASE)
    (tmp_path / 'child.py').write_text(CHILD)
    return str(tmp_path / 'child.py')


def test_override_rederives_fields_in_every_file_of_the_chain(child):
    cfg = Config.fromfile(child)
    cfg.merge_from_dict({
        'num_classes': 6,
        'size': 48,
        'model.head.in_channels': 16,
        'work_dir': 'other'
    })
    cfg.launcher = 'none'  # a key the file does not have (as tools add)
    resolved = resolve_config(cfg)
    model = resolved.model
    # derived in the base file from a variable assigned there
    assert model.head.num_classes == model.mixup.num_classes == 6
    # the base derives from ``size`` too, the child from ``short = size...``
    assert model.sizes == [48, 48]
    assert resolved.short == 60
    assert resolved.pipeline == [dict(type='Resize', scale=(-1, 60))]
    # every other change is kept
    assert model.head.in_channels == 16
    assert resolved.work_dir == 'other' and resolved.launcher == 'none'
    assert resolved.filename == cfg.filename
    # the parse of the file itself is untouched
    assert Config.fromfile(child).model.head.num_classes == 4


def test_unchanged_variables_return_the_config_itself(child):
    cfg = Config.fromfile(child)
    cfg.merge_from_dict({'model.head.in_channels': 16})
    assert resolve_config(cfg) is cfg
    # a variable nothing derives from changes nothing else either
    cfg.merge_from_dict({'work_dir': 'other'})
    assert resolve_config(cfg) is cfg


def test_bad_values_fail_and_leave_mmengine_as_it_was(child):
    with pytest.raises(ValueError, match="'size'.*not a Python literal"):
        parse_config(child, dict(size=float('nan')))
    with pytest.raises(TypeError):  # 'a' * 5 // 4 in the child
        parse_config(child, dict(size='a'))
    assert mmengine_config.RemoveAssignFromAST is RemoveAssignFromAST
    assert Config.fromfile(child).size == 32
