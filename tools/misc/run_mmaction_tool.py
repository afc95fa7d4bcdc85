# Copyright (c) mmstop contributors. All rights reserved.
"""Run one of MMAction2's own tools with mmstop loaded.

    python tools/misc/run_mmaction_tool.py TOOL [ARGS ...]
    python tools/misc/run_mmaction_tool.py --list

``TOOL`` is a script of MMAction2's ``tools/`` directory, which the
mmaction2 package ships as ``mmaction/.mim/tools``: a path under it
(``analysis_tools/confusion_matrix.py``) or a script name that is unique
there (``confusion_matrix``). ``ARGS`` go to the tool unchanged. Examples::

    python tools/misc/run_mmaction_tool.py confusion_matrix \\
        configs/stop_clip_demo.py work_dirs/stop_clip_demo/epoch_20.pth \\
        --show-path work_dirs/confusion.png
    python tools/misc/run_mmaction_tool.py publish_model \\
        work_dirs/stop_clip_demo/epoch_20.pth work_dirs/stop_clip_demo.pth

Before the tool runs, ``import mmstop`` registers mmstop's components and
applies ``mmstop/compat.py``, which some tools need before they read a
config (``confusion_matrix.py`` imports ``mmaction.models``, which the
mmaction2 1.2.0 wheel cannot import without the ``drn`` shim); while it
runs, ``torch.load`` accepts the types MMEngine checkpoints hold, still
with ``weights_only=True`` (``publish_model.py`` reads checkpoints with a
bare ``torch.load``): :mod:`mmstop.utils.mmaction_tools`.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmstop.utils import mmaction_tools  # noqa: E402


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage='%(prog)s TOOL [ARGS ...] | --list')
    parser.add_argument(
        '--list', action='store_true', help="list MMAction2's tools")
    parser.add_argument('tool', nargs='?', help='the tool to run')
    parser.add_argument(
        'args', nargs=argparse.REMAINDER, help='arguments of the tool')
    args = parser.parse_args(argv)
    if args.list or not args.tool:
        print('\n'.join(mmaction_tools.list_mmaction_tools()))
        return
    mmaction_tools.run_mmaction_tool(args.tool, args.args)


if __name__ == '__main__':
    main()
