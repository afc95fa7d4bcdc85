# Copyright (c) mmstop contributors. All rights reserved.
"""Running MMAction2's own tools (``mmaction/.mim/tools``) with mmstop.

The mmaction2 package ships MMAction2's ``tools/`` directory as
``mmaction/.mim/tools``. :func:`run_mmaction_tool` runs one of its scripts
in this process, after ``import mmstop`` (so mmstop's components are
registered and ``mmstop/compat.py`` is applied before the script imports
anything) and with ``torch.load`` accepting the types MMEngine checkpoints
hold (the allow-list of :func:`~mmstop.utils.checkpoint.safe_torch_load`,
still ``weights_only=True``): scripts that call ``torch.load`` themselves
(``deployment/publish_model.py``) then read MMEngine checkpoints, which
torch >= 2.6 refuses otherwise, and nothing in a file can run code.
"""
import glob
import os.path as osp
import runpy
import sys
from typing import List, Sequence

import torch
from mmengine.registry import Registry

from .checkpoint import checkpoint_safe_globals

__all__ = [
    'list_mmaction_tools', 'mmaction_tools_dir', 'resolve_mmaction_tool',
    'run_mmaction_tool'
]


def mmaction_tools_dir() -> str:
    """MMAction2's ``tools/`` directory as the installed package ships it.

    Returns:
        str: The directory.
    """
    import mmaction
    return osp.join(osp.dirname(mmaction.__file__), '.mim', 'tools')


def list_mmaction_tools() -> List[str]:
    """MMAction2's Python tools, relative to :func:`mmaction_tools_dir`.

    Returns:
        list[str]: E.g. ``'analysis_tools/confusion_matrix.py'``.
    """
    root = mmaction_tools_dir()
    return sorted(
        osp.relpath(p, root)
        for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True))


def resolve_mmaction_tool(name: str) -> str:
    """The path of MMAction2's tool ``name``.

    Args:
        name (str): A path under :func:`mmaction_tools_dir`
            (``'analysis_tools/confusion_matrix.py'``) or a script name that
            is unique there (``'confusion_matrix'``).

    Returns:
        str: The script's path.

    Raises:
        FileNotFoundError: No tool or several match ``name``; the message
            names the candidates.
    """
    root = mmaction_tools_dir()
    if osp.isfile(osp.join(root, name)):
        return osp.join(root, name)
    stem = osp.splitext(osp.basename(name))[0]
    matches = [
        t for t in list_mmaction_tools()
        if osp.splitext(osp.basename(t))[0] == stem
    ]
    if len(matches) == 1:
        return osp.join(root, matches[0])
    what = (f'several MMAction2 tools are called {stem!r}: {matches}'
            if matches else f'MMAction2 has no tool {name!r}')
    raise FileNotFoundError(f'{what} (in {root})')


def _registries() -> List[Registry]:
    import mmaction.registry
    return [
        r for r in vars(mmaction.registry).values() if isinstance(r, Registry)
    ]


def run_mmaction_tool(name: str, args: Sequence[str]) -> None:
    """Run MMAction2's tool ``name`` as ``__main__`` with ``args``.

    Some tools register classes of their own when they run
    (``check_videos.py`` a ``RandomSampleFrames`` transform); those are
    removed from MMAction2's registries afterwards, so that the tool can run
    again in the same process, as it would in a new one.

    Args:
        name (str): The tool (:func:`resolve_mmaction_tool`).
        args (Sequence[str]): Its command-line arguments.
    """
    import mmstop  # noqa: F401  (registers modules, applies compat patches)
    path = resolve_mmaction_tool(name)
    before = {id(r): set(r.module_dict) for r in _registries()}
    saved = sys.argv
    sys.argv = [path] + list(args)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = saved
        for registry in _registries():
            for key in set(registry.module_dict) - before.get(
                    id(registry), set()):
                if registry.module_dict[key].__module__ == '__main__':
                    del registry._module_dict[key]
