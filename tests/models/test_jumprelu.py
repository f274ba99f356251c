"""JumpReLU SAE: the straight-through pseudo-derivatives and the loss against the paper's
equations written out directly (Rajamanoharan et al. 2024, "Jumping Ahead", eqs. 11-12)."""

import pytest
import torch

from mmsae.models.base import ALL
from mmsae.models.jumprelu import JumpReLUConfig, JumpReLUFunction, JumpReLUSAE, StepFunction


def _kernel(u):
    """The rectangle kernel K(u) = 1[−½ < u < ½]."""
    return ((u > -0.5) & (u < 0.5)).float()


def test_autograd_functions_match_the_pseudo_derivatives():
    torch.manual_seed(0)
    eps = 0.3
    pre = torch.randn(50, 7, requires_grad=True)
    theta = (0.2 + torch.rand(7)).requires_grad_(True)
    g = torch.randn(50, 7)

    out = JumpReLUFunction.apply(pre, theta, eps)
    torch.testing.assert_close(out, pre * (pre > theta))
    g_pre, g_theta = torch.autograd.grad(out, [pre, theta], g)
    torch.testing.assert_close(g_pre, g * (pre > theta).float())
    want = (-(theta / eps) * _kernel((pre - theta) / eps) * g).sum(0)
    torch.testing.assert_close(g_theta, want.detach())

    step = StepFunction.apply(pre, theta, eps)
    torch.testing.assert_close(step, (pre > theta).float())
    g_pre, g_theta = torch.autograd.grad(step, [pre, theta], g, allow_unused=True)
    assert g_pre is None  # the L0 term sends nothing to the pre-activations
    torch.testing.assert_close(g_theta, (-(1 / eps) * _kernel((pre - theta) / eps) * g).sum(0).detach())


def test_loss_and_threshold_gradient_match_the_paper():
    torch.manual_seed(1)
    lam, eps = 0.4, 0.5
    sae = JumpReLUSAE(JumpReLUConfig(d_in=6, dict_size=12, l0_coef=lam, l0_warmup_frac=0.0, bandwidth=eps))
    with torch.no_grad():
        sae.log_threshold.copy_(torch.log(0.1 + torch.rand(12)))
    x = torch.randn(20, 6)
    out = sae.training_loss({ALL: x}, step=10, total_steps=10)
    (g_log,) = torch.autograd.grad(out.loss, [sae.log_threshold])

    with torch.no_grad():
        theta = sae.log_threshold.exp()
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    z = (pre * (pre > theta)).requires_grad_(True)
    x_hat = z @ sae.W_dec.detach() + sae.b_dec.detach()
    recon = ((x - x_hat) ** 2).sum(-1).mean()
    l0 = (pre > theta).float().sum(-1).mean()
    torch.testing.assert_close(out.loss.detach(), recon.detach() + lam * l0, rtol=1e-5, atol=1e-5)
    (g_z,) = torch.autograd.grad(recon, [z])
    window = _kernel((pre - theta) / eps)
    dL_dtheta = (-(theta / eps) * window * g_z).sum(0) + lam * (-(1 / eps) * window).sum(0) / len(x)
    torch.testing.assert_close(g_log, theta * dL_dtheta, rtol=1e-4, atol=1e-6)  # θ = exp(log θ)


def test_training_starts_from_the_sample_quantile_and_folds_thresholds():
    torch.manual_seed(2)
    sae = JumpReLUSAE(JumpReLUConfig(d_in=8, dict_size=16, init_fire_rate=0.25))
    x = torch.randn(400, 8) * 3
    sae.init_from_sample_({ALL: x}, "zeros")
    fire = (sae.pre_acts(x) > sae.threshold).float().mean(0)
    assert fire.mean().item() == pytest.approx(0.25, abs=0.02)
    mean, scale = torch.randn(8), 2.5
    codes = sae((x - mean) * scale).codes_BF
    sae.fold_input_normalization_({ALL: (mean, scale)})
    torch.testing.assert_close(sae(x).codes_BF, codes / scale, rtol=1e-4, atol=1e-5)
