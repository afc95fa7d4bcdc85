# Copyright (c) mmstop contributors. All rights reserved.
"""Shared pytest set-up.

* ``HF_HUB_OFFLINE=1`` before anything imports open_clip / huggingface_hub, so
  nothing waits on a download that cannot happen.
* ``parity_dir``: where the golden data of the official implementations live
  (``$MMSTOP_PARITY_DIR``, else ``../shared/parity`` beside the checkout). A
  missing directory skips the parity tests with a visible reason, unless
  ``MMSTOP_REQUIRE_PARITY=1`` (set by ``.ci/run``) turns that into a failure.
* ``one_thread`` / ``torch_seed``: one torch intra-op thread for a module /
  ``torch.manual_seed(0)`` before each test, for the modules that ask with
  ``pytestmark = pytest.mark.usefixtures('one_thread', ...)``.
* ``load_tool``: import a script of the repository (``tools/...``) as a
  module.
* ``device``: where the parity tests run their models,
  ``$MMSTOP_TEST_DEVICE`` (default ``cpu``; ``tools/analysis/gpu_check.py``
  sets ``cuda``, with TF32 off so fp32 means fp32).
"""
import os
import os.path as osp
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402
from helpers import REPO_ROOT  # noqa: E402

DEFAULT_PARITY_DIR = osp.normpath(
    osp.join(REPO_ROOT, '..', 'shared', 'parity'))


def parity_root() -> str:
    return os.environ.get('MMSTOP_PARITY_DIR', DEFAULT_PARITY_DIR)


def get_parity_dir(kind: str) -> str:
    """Return ``<parity root>/<kind>`` or skip (fail under
    MMSTOP_REQUIRE_PARITY)."""
    path = osp.join(parity_root(), kind)
    if not osp.isdir(path):
        msg = (f'golden parity data not found at {path}: set '
               'MMSTOP_PARITY_DIR to the directory holding stop/ and ssp/')
        if os.environ.get('MMSTOP_REQUIRE_PARITY') == '1':
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def import_file(path: str, name: str):
    """Import the Python file ``path`` as module ``name`` (once per session:
    later calls return the module from ``sys.modules``)."""
    import importlib.util
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_parity_weights(kind: str):
    """Import ``<parity root>/<kind>/weights.py`` as a uniquely named
    module."""
    return import_file(
        osp.join(get_parity_dir(kind), 'weights.py'),
        f'_parity_weights_{kind}')


def _load_tool(relpath: str):
    """Import ``relpath`` (relative to the repository root, e.g.
    ``'tools/train.py'``) as a uniquely named module."""
    name = '_mmstop_tool_' + relpath.replace('/', '_').replace('.py', '')
    return import_file(osp.join(REPO_ROOT, relpath), name)


@pytest.fixture(scope='session')
def load_tool():
    """:func:`_load_tool`: ``load_tool('tools/x.py') -> module``."""
    return _load_tool


@pytest.fixture(scope='session')
def stop_parity_dir():
    return get_parity_dir('stop')


@pytest.fixture(scope='session')
def ssp_parity_dir():
    return get_parity_dir('ssp')


@pytest.fixture(scope='session')
def stop_weights():
    return import_parity_weights('stop')


@pytest.fixture(scope='session')
def ssp_weights():
    return import_parity_weights('ssp')


@pytest.fixture(scope='module')
def one_thread():
    """Run a test module with one torch intra-op thread (restored after).

    Small models are many small ops, and on the shared 2-core machine 2
    OpenMP threads stall when the other core is busy: measured ~5x slower
    for tests/models/backbones/test_videomamba.py, 1.1 s instead of 0.03 s
    per tiny STOP forward, 305 s instead of 20 s for the full-size SSP parity
    sequence (c) under the same load.
    """
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def torch_seed():
    """``torch.manual_seed(0)`` before the test."""
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def device():
    """``$MMSTOP_TEST_DEVICE`` (default ``cpu``) as a ``torch.device``.

    Asking for CUDA on a machine without it fails (it is never silently
    replaced by the CPU); on CUDA, TF32 matmuls and convolutions are off.
    """
    import torch
    dev = torch.device(os.environ.get('MMSTOP_TEST_DEVICE', 'cpu'))
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            pytest.fail(f'MMSTOP_TEST_DEVICE={dev} but CUDA is not available')
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return dev
