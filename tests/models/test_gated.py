"""Gated SAE: the loss and its gradients against the paper's equations written out directly."""

import torch

from mmsae.models.base import ALL
from mmsae.models.gated import GatedConfig, GatedSAE


def _paper_loss(x, W_gate, b_gate, r_mag, b_mag, W_dec, b_dec, lam):
    """Rajamanoharan et al. 2024, eqs. for π_gate, f_gate, W_mag, f_mag, f̃ and L_gated, transcribed
    with a [D, F] W_gate: every term as the paper writes it, nothing shared with the module."""
    x_cent = x - b_dec
    pi_gate = x_cent @ W_gate + b_gate
    f_gate = (pi_gate > 0).float()
    W_mag = torch.exp(r_mag)[None, :] * W_gate
    f_mag = torch.relu(x_cent @ W_mag + b_mag)
    f = f_gate * f_mag
    x_hat = f @ W_dec + b_dec
    l_recon = ((x - x_hat) ** 2).sum(-1).mean()
    l_sparsity = lam * torch.relu(pi_gate).sum(-1).mean()
    x_hat_frozen = torch.relu(pi_gate) @ W_dec.detach() + b_dec.detach()
    l_aux = ((x - x_hat_frozen) ** 2).sum(-1).mean()
    return l_recon + l_sparsity + l_aux, f


def test_loss_and_gradients_match_the_paper():
    torch.manual_seed(0)
    sae = GatedSAE(GatedConfig(d_in=6, dict_size=10, l1_coef=0.7, l1_warmup_frac=0.0))
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(9, 6)
    out = sae.training_loss({ALL: x}, step=100, total_steps=100)
    got = torch.autograd.grad(out.loss, list(sae.parameters()))

    params = {n: p.detach().clone().requires_grad_(True) for n, p in sae.named_parameters()}
    want_loss, f = _paper_loss(
        x,
        params["W_enc"],
        params["b_enc"],
        params["r_mag"],
        params["b_mag"],
        params["W_dec"],
        params["b_dec"],
        lam=0.7,
    )
    want = torch.autograd.grad(want_loss, [params[n] for n, _ in sae.named_parameters()])
    torch.testing.assert_close(out.loss, want_loss, rtol=1e-5, atol=1e-5)
    for (name, _), g, w in zip(sae.named_parameters(), got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(sae.encode(x), f.detach(), rtol=1e-5, atol=1e-6)
    assert 0 < float(out.l0) < 10


def test_the_gate_alone_is_trained_by_the_auxiliary_loss():
    """H has no gradient, so with λ = 0 b_gate's gradient comes from the auxiliary term alone."""
    torch.manual_seed(1)
    sae = GatedSAE(GatedConfig(d_in=5, dict_size=8, l1_coef=0.0, l1_warmup_frac=0.0))
    x = torch.randn(16, 5)
    out = sae.training_loss({ALL: x})
    (g_gate,) = torch.autograd.grad(out.loss, [sae.b_enc])
    assert g_gate.abs().sum() > 0
