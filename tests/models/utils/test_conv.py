# Copyright (c) mmstop contributors. All rights reserved.
"""conv3d_same: the FFT path is the same correlation as F.conv3d, and the
CPU backend rule picks the path its docstring states."""
import pytest
import torch
import torch.nn.functional as F

import mmstop.models.utils.conv as conv
from mmstop.models.utils import conv3d_same

# in_channels, out_channels, kernel, padding ("same", smaller, asymmetric),
# input T x H x W (the kernel may be larger than the input, as in STOP's
# inter-frame convolution over few patches)
CASES = [
    (3, 9, (3, 5, 5), (1, 2, 2), (4, 12, 10)),
    (9, 1, (3, 15, 25), (1, 7, 12), (5, 6, 20)),
    (1, 1, (5, 11, 11), (2, 5, 5), (3, 4, 13)),
    (2, 3, (3, 3, 5), (0, 1, 0), (4, 7, 9)),
]


@pytest.mark.parametrize('cin,cout,kernel,padding,size', CASES)
@pytest.mark.parametrize('with_bias', [False, True])
def test_fft_matches_conv3d_float64(cin, cout, kernel, padding, size,
                                    with_bias):
    torch.manual_seed(0)
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    w = torch.randn(cout, cin, *kernel, dtype=torch.float64)
    b = torch.randn(cout, dtype=torch.float64) if with_bias else None
    expected = F.conv3d(x, w, b, padding=padding)
    actual = conv._conv3d_fft(x, w, b, padding)
    assert actual.shape == expected.shape
    assert actual.is_contiguous()
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)


def test_fft_gradients_match_conv3d():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 2, 4, 6, 7, dtype=torch.float64)
    grads = []
    for fn in (lambda: F.conv3d(x, w, b, padding=(1, 2, 2)),
               lambda: conv._conv3d_fft(x, w, b, (1, 2, 2))):
        grads.append(torch.autograd.grad(fn(), (x, w, b), g))
    for expected, actual in zip(*grads):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-11)


def _backend(monkeypatch, x, w):
    """Which path conv3d_same takes for (x, w): 'fft' or 'direct'."""
    used = []

    def fft(*args):
        used.append('fft')
        return torch.zeros(())

    def direct(*args, **kwargs):
        used.append('direct')
        return torch.zeros(())

    monkeypatch.setattr(conv, '_conv3d_fft', fft)
    monkeypatch.setattr(conv.F, 'conv3d', direct)
    conv3d_same(x, w, None, (1, 1, 1))
    monkeypatch.undo()
    assert len(used) == 1
    assert conv.uses_fft(x, w) == (used[0] == 'fft')
    return used[0]


def test_backend_rule_on_cpu(monkeypatch):
    x2, x1 = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 1, 3, 4, 4)
    w_2to3, w_2to1 = torch.randn(3, 2, 3, 3, 3), torch.randn(1, 2, 3, 3, 3)
    w_1to3 = torch.randn(3, 1, 3, 3, 3)
    # float32, several input and output channels: mkldnn, with or without
    # a backward pass
    assert _backend(monkeypatch, x2, w_2to3) == 'direct'
    assert _backend(monkeypatch, x2, w_2to3.requires_grad_()) == 'direct'
    assert _backend(monkeypatch, x2.requires_grad_(), w_2to3) == 'direct'
    # one output channel (the scorers, the last prompt layer): FFT
    assert _backend(monkeypatch, x2, w_2to1) == 'fft'
    assert _backend(monkeypatch, x2, w_2to1.requires_grad_()) == 'fft'
    # one input channel: FFT when a backward pass follows
    assert _backend(monkeypatch, x1, w_1to3) == 'direct'
    assert _backend(monkeypatch, x1, w_1to3.requires_grad_()) == 'fft'
    assert _backend(monkeypatch, x1.requires_grad_(), w_1to3.detach()) \
        == 'fft'
    with torch.no_grad():  # grad mode off: no backward pass
        assert _backend(monkeypatch, x1, w_1to3) == 'direct'
    # float64: FFT (no mkldnn kernel, one huge im2col buffer)
    assert _backend(monkeypatch,
                    x2.detach().double(),
                    w_2to3.detach().double()) == 'fft'


def test_backend_rule_off_cpu():
    x = torch.randn(1, 2, 3, 4, 4, device='meta', dtype=torch.float64)
    w = torch.randn(1, 2, 3, 3, 3, device='meta', dtype=torch.float64)
    assert not conv.uses_fft(x, w)
