# Copyright (c) mmstop contributors. All rights reserved.
"""Triton scan under Triton's interpreter, and the implementation dispatch.

The kernels' numerical checks live in ``triton_scan_checks.py``; here they
run in a subprocess with ``TRITON_INTERPRET=1`` (it must be set before
``triton`` is imported, and this process may have imported it already).
"""
import importlib
import os
import os.path as osp
import subprocess
import sys
import types

import pytest
import torch
from helpers import REPO_ROOT
from helpers.scan import make_inputs, scan

from mmstop.models.ops import IMPL_ENV, resolve_impl

scan_module = importlib.import_module('mmstop.models.ops.selective_scan')
HERE = osp.dirname(osp.abspath(__file__))


@pytest.mark.slow
def test_kernels_under_interpreter():
    pytest.importorskip('triton', reason='the Triton scan needs triton')
    env = dict(
        os.environ,
        TRITON_INTERPRET='1',
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([
        sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
        osp.join(HERE, 'triton_scan_checks.py')
    ],
                          cwd=REPO_ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=900)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert ' passed' in tail and 'skipped' not in tail, tail


# ---------------------------------------------------------------- dispatch


@pytest.fixture
def clean_dispatch(monkeypatch):
    """No $MMSTOP_SCAN_IMPL, fresh probe / log caches, messages recorded."""
    monkeypatch.delenv(IMPL_ENV, raising=False)
    messages = []
    monkeypatch.setattr(scan_module, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    scan_module._log_once.cache_clear()
    scan_module._mamba_ssm_scan_fn.cache_clear()
    yield messages
    scan_module._log_once.cache_clear()
    scan_module._mamba_ssm_scan_fn.cache_clear()


def fake_mamba(monkeypatch, fn):
    """Install a fake ``mamba_ssm.ops.selective_scan_interface``."""
    mod = types.ModuleType('mamba_ssm.ops.selective_scan_interface')
    mod.selective_scan_fn = fn
    for name in ('mamba_ssm', 'mamba_ssm.ops'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)


def no_mamba(monkeypatch):
    # a None entry makes `import` raise ImportError
    monkeypatch.setitem(sys.modules, 'mamba_ssm', None)


def test_auto_on_cuda_never_picks_a_per_step_loop(clean_dispatch, monkeypatch):
    no_mamba(monkeypatch)
    assert resolve_impl('auto', 'cuda') == 'triton'
    scan_module._mamba_ssm_scan_fn.cache_clear()
    fake_mamba(monkeypatch, lambda *a: None)
    assert resolve_impl('auto', 'cuda') == 'mamba_ssm'
    assert resolve_impl('auto', 'cpu') == 'fast'


def test_auto_on_cuda_without_triton_is_an_error(clean_dispatch, monkeypatch):
    no_mamba(monkeypatch)
    monkeypatch.setitem(sys.modules, 'mmstop.models.ops.selective_scan_triton',
                        None)
    with pytest.raises(RuntimeError, match="needs the `triton` package"):
        resolve_impl('auto', 'cuda')


def test_choice_is_logged_once(clean_dispatch):
    for _ in range(3):
        resolve_impl('auto', 'cpu')
    resolve_impl('reference', 'cpu')
    assert clean_dispatch == [
        "selective_scan: 'auto' on cpu -> 'fast'",
        "selective_scan: 'reference' on cpu -> 'reference'"
    ]


def test_environment_replaces_auto(clean_dispatch, monkeypatch):
    x = make_inputs(1, 4, 6, 3)
    monkeypatch.setenv(IMPL_ENV, 'reference')
    assert resolve_impl('auto', 'cpu') == 'reference'
    assert resolve_impl('fast', 'cpu') == 'fast'  # explicit argument wins
    calls = []
    monkeypatch.setattr(scan_module, 'selective_scan_reference',
                        lambda *a: calls.append(a) or a[0])
    scan('auto', x)
    assert len(calls) == 1
    assert clean_dispatch[0] == (
        f"selective_scan: '{IMPL_ENV}=reference' on cpu -> 'reference'")


def test_bad_environment_value(clean_dispatch, monkeypatch):
    monkeypatch.setenv(IMPL_ENV, 'cuda')
    with pytest.raises(ValueError, match=f'{IMPL_ENV} must be one of'):
        resolve_impl('auto', 'cpu')


def test_unavailable_choices_raise_instead_of_falling_back(
        clean_dispatch, monkeypatch):
    no_mamba(monkeypatch)
    with pytest.raises(RuntimeError, match='"mamba_ssm" requested'):
        resolve_impl('mamba_ssm', 'cuda')
    pytest.importorskip('triton')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        scan('triton', make_inputs(1, 4, 6, 3))


def test_mamba_ssm_choice_calls_its_kernel(clean_dispatch, monkeypatch):
    calls = []
    fake_mamba(monkeypatch, lambda *args: calls.append(args) or args[0])
    x = make_inputs(1, 4, 6, 3)
    out = scan('mamba_ssm', x, delta_softplus=True)
    assert out is x['u'] and len(calls) == 1
    # same positional arguments as mamba_ssm's selective_scan_fn
    assert calls[0][5] is x['D'] and calls[0][6] is x['z']
    assert calls[0][8] is True


def test_mamba_ssm_probe(clean_dispatch, monkeypatch):
    no_mamba(monkeypatch)
    assert scan_module._mamba_ssm_scan_fn() is None
    assert 'not available' in clean_dispatch[0]

    def broken_import(name, *args, **kwargs):
        if name.startswith('mamba_ssm'):
            raise OSError('libcudart.so.11.0: cannot open shared object')
        return real_import(name, *args, **kwargs)

    real_import = __import__
    scan_module._mamba_ssm_scan_fn.cache_clear()
    monkeypatch.setitem(sys.modules, 'mamba_ssm', None)
    monkeypatch.delitem(sys.modules, 'mamba_ssm')
    monkeypatch.setattr('builtins.__import__', broken_import)
    assert scan_module._mamba_ssm_scan_fn() is None  # broken build

    def buggy_import(name, *args, **kwargs):
        if name.startswith('mamba_ssm'):
            raise ZeroDivisionError('a bug, not a missing package')
        return real_import(name, *args, **kwargs)

    scan_module._mamba_ssm_scan_fn.cache_clear()
    monkeypatch.setattr('builtins.__import__', buggy_import)
    with pytest.raises(ZeroDivisionError):
        scan_module._mamba_ssm_scan_fn()


def test_mixer_passes_its_scan_impl(monkeypatch):
    from mmstop.models.backbones.mamba_mixer import BiMambaMixer
    seen = []

    def spy(*args, impl, **kwargs):
        seen.append(impl)
        return args[0]

    monkeypatch.setattr('mmstop.models.backbones.mamba_mixer.selective_scan',
                        spy)
    BiMambaMixer(8, d_state=2, scan_impl='triton')(torch.zeros(1, 3, 8))
    assert seen == ['triton', 'triton']
