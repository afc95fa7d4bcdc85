# Copyright (c) mmstop contributors. All rights reserved.
"""minmax_normalize: per slice or over everything; constant slices."""
import torch

from mmstop.models.utils import minmax_normalize


def test_slices_and_whole_tensor():
    x = torch.tensor([[1., 3., 2.], [4., 4., 4.]])
    torch.testing.assert_close(
        minmax_normalize(x), torch.tensor([[0., 1., .5], [0., 0., 0.]]))
    torch.testing.assert_close(
        minmax_normalize(x, dim=0), torch.tensor([[0., 0., 0.], [1., 1., 1.]]))
    torch.testing.assert_close(minmax_normalize(x, dim=None), (x - 1.) / 3.)


def test_constant_slices_zero_or_nan():
    x = torch.tensor([[2., 2.], [1., 3.]])
    assert minmax_normalize(x)[0].eq(0).all()
    plain = minmax_normalize(x, constant_to_zero=False)
    assert torch.isnan(plain[0]).all()
    torch.testing.assert_close(plain[1], torch.tensor([0., 1.]))
    assert torch.isnan(
        minmax_normalize(
            torch.tensor([[.3]]), dim=None, constant_to_zero=False)).all()
