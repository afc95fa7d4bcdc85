# Copyright (c) mmstop contributors. All rights reserved.
"""Cheap checks of .ci/run (the full run builds a venv; see the README)."""
import os
import os.path as osp
import subprocess
import sys

from helpers import REPO_ROOT

CI_RUN = osp.join(REPO_ROOT, '.ci', 'run')


def test_ci_run_is_executable_bash():
    assert os.access(CI_RUN, os.X_OK)
    subprocess.run(['bash', '-n', CI_RUN], check=True)


def test_ci_run_refuses_to_run_without_parity_data(tmp_path):
    env = dict(
        os.environ,
        MMSTOP_PARITY_DIR=str(tmp_path / 'no_parity'),
        MMSTOP_CI_PYTHON=sys.executable)
    env.pop('MMSTOP_VENV_CACHE', None)
    proc = subprocess.run([CI_RUN],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert 'golden parity data' in proc.stderr
    assert str(tmp_path / 'no_parity' / 'stop') in proc.stderr
    assert 'venv' not in proc.stdout  # stopped before touching any venv
