# Copyright (c) mmstop contributors. All rights reserved.
"""Shared by the end-to-end tests of tools/: ``run_tool`` runs a command
(tools/train.py, tools/test.py, tools/dist_train.sh, ...) in a subprocess."""
import os
import os.path as osp
import subprocess
import sys

import pytest

TIMEOUT = 600  # seconds per subprocess; a hang fails instead of blocking CI


def _run_tool(cmd, log_path, timeout=TIMEOUT, **env):
    """Run ``cmd`` in the directory of ``log_path`` (the test's temporary
    directory: whatever a tool writes beside its work dir, e.g. MMEngine's
    ``.dist_test/`` of a distributed evaluation, stays out of the
    repository), stdout and stderr to ``log_path``; assert exit status 0
    (showing the log tail) and return the output.

    The environment: one OpenMP thread (the demos are many small ops, and 2
    threads stall when the other core is busy), ``HF_HUB_OFFLINE=1``,
    ``PYTHON`` = this interpreter (read by tools/dist_*.sh), plus ``env``;
    ``timeout`` seconds at most.
    """
    full_env = dict(
        os.environ,
        HF_HUB_OFFLINE='1',
        OMP_NUM_THREADS='1',
        PYTHON=sys.executable,
        **env)
    with open(log_path, 'w') as log:
        proc = subprocess.run(
            cmd,
            cwd=osp.dirname(osp.abspath(log_path)),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout)
    with open(log_path) as f:
        output = f.read()
    assert proc.returncode == 0, (
        f'{" ".join(cmd)} exited with {proc.returncode}; log tail:\n'
        f'{output[-4000:]}')
    return output


@pytest.fixture
def run_tool():
    """:func:`_run_tool`: ``run_tool(cmd, log_path, **env) -> output``."""
    return _run_tool
