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
    return sorted(
        glob(osp.join(PACKAGE, 'models', '**', '*.py'), recursive=True))


def test_models_do_not_import_datasets():
    offenders = [(osp.relpath(path, PACKAGE), module)
                 for path in model_modules() for module, _ in imports(path)
                 if module.startswith('mmstop.datasets')]
    assert not offenders


def test_models_import_no_private_names_of_other_modules():
    offenders = [(osp.relpath(path, PACKAGE), module, name)
                 for path in model_modules() for module, names in imports(path)
                 if module.startswith('mmstop.') for name in names
                 if name.startswith('_')]
    assert not offenders


def test_public_models_are_exported():
    for name in ('STOPCLIP', 'STOPRecognizer', 'TextClassifierHead',
                 'STOPSimilarity', 'VideoMamba'):
        assert name in mmstop.models.__all__
        assert getattr(mmstop.models, name).__name__ == name


def test_no_import_cycles_between_modules():
    """No module imports (at any depth, function-level imports included)
    a module that imports it back; package ``__init__`` files, which only
    re-export, are left out. ``videomamba.py`` and its checkpoint module
    used to import each other."""

    def name(path):
        return '.'.join(
            osp.relpath(path, osp.dirname(PACKAGE))[:-3].split(osp.sep))

    paths = [
        p for p in glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)
        if not p.endswith('__init__.py')
    ]
    modules = {name(p) for p in paths}
    graph = {
        name(p): {
            target
            for module, names in imports(p)
            for target in [module] + [f'{module}.{n}' for n in names]
            if target in modules and target != name(p)
        }
        for p in paths
    }
    state, cycles = {}, []

    def visit(module, path):
        state[module] = 'open'
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                cycles.append(path[path.index(target):] + [module, target])
            elif target not in state:
                visit(target, path + [module])
        state[module] = 'done'

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles
