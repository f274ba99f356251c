import math

import pytest
import torch

from mmsae.models.init import geometric_median
from mmsae.train.init import normalization_stats
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


def test_encoder_gain_is_the_least_squares_scale():
    """After the fit, scaling W_enc further by any factor reconstructs the sample worse, and the
    gain equals the closed form ⟨x − b_dec, r⟩ / ⟨r, r⟩ computed here directly."""
    from mmsae.models.init import fit_encoder_gain_
    from mmsae.models.registry import build_sae

    torch.manual_seed(0)
    sae = build_sae("topk", d_in=32, dict_size=256, k=8)
    x = torch.randn(500, 32) + 2.0
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        r = sae(x).x_hat_BD - sae.b_dec
    e = x - sae.b_dec.detach()
    expected = float((e * r).sum() / (r * r).sum())
    W0 = sae.W_enc.detach().clone()
    c = fit_encoder_gain_(sae, x, damping=1.0)
    assert abs(c - expected) < 1e-5 and 0 < c < 1  # the transpose overshoots
    torch.testing.assert_close(sae.W_enc.detach(), c * W0)

    def err(factor):
        with torch.no_grad():
            sae.W_enc.mul_(factor)
            out = float((sae(x).x_hat_BD - x).pow(2).sum())
            sae.W_enc.div_(factor)
        return out

    assert err(1.0) < err(1.05) and err(1.0) < err(0.95)


def test_encoder_gain_damped_by_default():
    """The default start is GAIN_DAMPING times the least-squares gain."""
    from mmsae.models.init import GAIN_DAMPING, fit_encoder_gain_
    from mmsae.models.registry import build_sae

    torch.manual_seed(1)
    x = torch.randn(400, 16) + 1.0
    fitted = []
    for damping in (1.0, None):
        sae = build_sae("topk", d_in=16, dict_size=64, k=4)
        sae.reset_parameters(generator=torch.Generator().manual_seed(3))
        W0 = sae.W_enc.detach().clone()
        c = fit_encoder_gain_(sae, x) if damping is None else fit_encoder_gain_(sae, x, damping=damping)
        torch.testing.assert_close(sae.W_enc.detach(), c * W0)
        fitted.append(c)
    assert 0 < GAIN_DAMPING < 1 and abs(fitted[1] - GAIN_DAMPING * fitted[0]) < 1e-6


def test_every_architecture_builds_from_a_train_config():
    """`TrainConfig.model_config` asks the architecture (no per-architecture branch in train/): each
    registered one builds from its own fields, and its checks and defaults are its own."""
    from mmsae.models.registry import ARCHITECTURES, build_sae
    from mmsae.train.config import TrainConfig

    for name, cls in ARCHITECTURES.items():
        cfg = TrainConfig(
            arch=name, dict_size=64, **({"k": 8} if cls.uses_k(TrainConfig(arch=name, dict_size=64)) else {})
        )
        sae = build_sae(name, **cfg.model_config(16))
        assert sae.architecture == name and sae.cfg.dict_size == 64
        assert cfg.resolved_normalize() == cls.default_normalize
