import math

import pytest
import torch

from mmsae.train.init import geometric_median, normalization_stats
from mmsae.train.schedule import lr_factor


def test_schedule_shapes():
    assert lr_factor(0, 100, 10, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(80, 100, 10, "constant", 0.0) == 1.0


def test_geometric_median_is_robust():
    x = torch.zeros(101, 3)
    x[:, 0] = torch.arange(101).float()
    x[-1] = 1e6  # an outlier barely moves the median, unlike the mean
    gm = geometric_median(x)
    assert abs(float(gm[0]) - 50) < 1.5
    # it minimises the sum of distances
    obj = lambda y: float((x - y).norm(dim=1).sum())  # noqa: E731
    assert obj(gm) <= obj(x.mean(0))


def test_normalization_stats():
    x = torch.randn(1000, 16) * 5 + 3
    mean, scale = normalization_stats(x, "center_scale")
    assert float(((x - mean) * scale).norm(dim=1).mean()) == pytest.approx(math.sqrt(16), rel=1e-5)
    mean, scale = normalization_stats(x, "none")
    assert scale == 1.0 and float(mean.abs().sum()) == 0.0
