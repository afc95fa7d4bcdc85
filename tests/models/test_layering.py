# Copyright (c) mmstop contributors. All rights reserved.
"""Package layering: the models depend on no dataset code and on no private
name of another module; the public entry points are exported."""
import ast
import os.path as osp
from glob import glob

import mmstop
import mmstop.models

PACKAGE = osp.dirname(mmstop.__file__)


def imports(path):
    """``(module, names)`` of every import in ``path``, relative imports
    resolved to absolute module names."""
    parts = osp.relpath(path, osp.dirname(PACKAGE))[:-3].split(osp.sep)
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ''
            if node.level:
                base = parts[:len(parts) - node.level]
                module = '.'.join(base + ([module] if module else []))
            yield module, [alias.name for alias in node.names]


def model_modules():
    return sorted(glob(osp.join(PACKAGE, 'models', '**', '*.py'),
                       recursive=True))


def test_models_do_not_import_datasets():
    offenders = [(osp.relpath(path, PACKAGE), module)
                 for path in model_modules()
                 for module, _ in imports(path)
                 if module.startswith('mmstop.datasets')]
    assert not offenders


def test_models_import_no_private_names_of_other_modules():
    offenders = [(osp.relpath(path, PACKAGE), module, name)
                 for path in model_modules()
                 for module, names in imports(path)
                 if module.startswith('mmstop.')
                 for name in names if name.startswith('_')]
    assert not offenders


def test_public_models_are_exported():
    for name in ('STOPCLIP', 'STOPRecognizer', 'TextClassifierHead',
                 'STOPSimilarity', 'VideoMamba'):
        assert name in mmstop.models.__all__
        assert getattr(mmstop.models, name).__name__ == name
