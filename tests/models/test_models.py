"""Every architecture: shapes, the encode formula, sparsity, save/load, folding."""

import numpy as np
import pytest
import torch

from mmsae.models import ARCHITECTURES, PAIRED_ARCHITECTURES, build_sae, load_sae, save_sae
from mmsae.models.base import ALL
from mmsae.models.io import SAELoadError

ARCH_KW = {"relu": {}, "topk": {"k": 4}, "batchtopk": {"k": 4}, "matryoshka": {"k": 8}, "gated": {}, "jumprelu": {}}
SINGLE = sorted(
    set(ARCHITECTURES) - set(PAIRED_ARCHITECTURES)
)  # paired SAEs: tests/models/test_vlsae.py, test_multimodal.py


def _sae(arch, D=12, F=40, seed=0):
    torch.manual_seed(seed)
    sae = build_sae(arch, d_in=D, dict_size=F, **ARCH_KW[arch])
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if arch == "batchtopk":
        sae.threshold.fill_(0.2)
    return sae


@pytest.mark.parametrize("arch", SINGLE)
def test_forward_shapes_and_formula(arch):
    sae = _sae(arch)
    x = torch.randn(16, 12)
    out = sae(x)
    assert out.codes_BF.shape == (16, 40) and out.x_hat_BD.shape == (16, 12)
    assert (out.codes_BF >= 0).all()
    # x̂ = z W_dec + b_dec, transcribed in numpy
    z = out.codes_BF.detach().numpy()
    np.testing.assert_allclose(
        out.x_hat_BD.detach().numpy(), z @ sae.W_dec.detach().numpy() + sae.b_dec.detach().numpy(), rtol=1e-5, atol=1e-5
    )
    pre = (x.numpy() - sae.b_dec.detach().numpy()) @ sae.W_enc.detach().numpy() + sae.b_enc.detach().numpy()
    if arch == "gated":  # the magnitude path sets the value (tests/models/test_gated.py has its formula)
        mag = sae.r_mag.detach().exp().numpy()
        pre = (pre - sae.b_enc.detach().numpy()) * mag + sae.b_mag.detach().numpy()
    nz = z > 0
    np.testing.assert_allclose(z[nz], pre[nz], rtol=1e-5, atol=1e-6)  # active codes equal their pre-activation


def test_topk_keeps_k_largest():
    sae = _sae("topk")
    x = torch.randn(32, 12)
    z = sae.encode(x).detach().numpy()
    pre = np.maximum(sae.pre_acts(x).detach().numpy(), 0)
    assert ((z > 0).sum(1) <= 4).all()
    for row_z, row_p in zip(z, pre):
        kth = np.sort(row_p)[-4]
        assert (row_z[row_p > kth] > 0).all()


def test_batchtopk_inference_threshold():
    sae = _sae("batchtopk")
    x = torch.randn(32, 12)
    pre = sae.pre_acts(x).detach().numpy()
    z = sae.encode(x).detach().numpy()
    np.testing.assert_allclose(z, np.where(pre > 0.2, pre, 0.0), rtol=1e-6)


def test_batchtopk_training_keeps_batch_k():
    sae = _sae("batchtopk")
    out = sae.training_loss({ALL: torch.randn(64, 12)})
    assert abs(float(out.l0) - 4.0) < 1e-6  # B·k activations over the batch, k on average
    assert float(sae.threshold[0]) > 0


def test_matryoshka_prefixes():
    sae = _sae("matryoshka")
    out = sae.training_loss({ALL: torch.randn(64, 12)})
    assert set(out.parts) >= {"mse_k4", "mse_k8"}
    # each nested loss is the loss of a plain TopK at that k on the same weights
    from mmsae.models.base import recon_loss
    from mmsae.models.topk import TopKConfig, TopKSAE

    torch.manual_seed(1)
    x = torch.randn(64, 12)
    out = sae.training_loss({ALL: x})
    for k in (4, 8):
        plain = TopKSAE(TopKConfig(d_in=12, dict_size=40, k=k))
        plain.load_state_dict(sae.state_dict())
        assert abs(out.parts[f"mse_k{k}"] - float(recon_loss(x, plain(x).x_hat_BD).detach())) < 1e-4
    assert abs(float(out.loss.detach()) - (out.parts["mse_k4"] + out.parts["mse_k8"]) / 2) < 1e-3


def test_sparse_decode_matches_dense():
    sae = _sae("topk")
    x = torch.randn(8, 12)
    from mmsae.models.base import dense_from_sparse, topk_sparse

    idx, val = topk_sparse(sae.pre_acts(x), 4)
    torch.testing.assert_close(sae.decode_sparse(idx, val), sae.decode(dense_from_sparse(idx, val, 40)))


def test_sparse_training_gradients_match_dense_autograd():
    """The embedding_bag decoder path gives the same gradients as dense z @ W_dec."""
    sae = _sae("topk")
    x = torch.randn(16, 12)
    sae.training_loss({ALL: x}).loss.backward()
    sparse_grads = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    from mmsae.models.base import recon_loss

    out = sae(x)
    recon_loss(x, out.x_hat_BD).backward()
    for g_s, p in zip(sparse_grads, sae.parameters()):
        torch.testing.assert_close(g_s, p.grad, rtol=1e-4, atol=1e-5)


def test_unit_norm_decoder_and_parallel_grad_removal():
    sae = _sae("topk")
    sae.training_loss({ALL: torch.randn(16, 12)}).loss.backward()
    sae.remove_parallel_grads_()
    W = sae.W_dec.detach()
    assert torch.allclose((sae.W_dec.grad * W).sum(1) / W.norm(dim=1), torch.zeros(40), atol=1e-5)
    sae.normalize_decoder_()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(40), atol=1e-6)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
def test_fired_latents_are_those_with_a_positive_code(arch):
    torch.manual_seed(0)
    sae, x = _sae(arch), torch.randn(16, 12)
    out = sae.training_loss({ALL: x})
    codes_BF = sae.encode(x) if arch != "batchtopk" else None
    if codes_BF is not None:  # TopK/Matryoshka: training codes are the inference codes
        assert torch.equal(out.fired_F, (codes_BF > 0).any(0))
    assert 0 < int(out.fired_F.sum()) < 40


@pytest.mark.parametrize("shape", [(16, 12), (3, 5, 7), (9,)])
def test_recon_loss_is_squared_error_summed_over_dims_averaged_over_rows(shape):
    from mmsae.models.base import recon_loss

    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.randn(shape, generator=g), torch.randn(shape, generator=g, requires_grad=True)
    want = (x_hat - x).pow(2).sum(dim=-1).mean()
    got = recon_loss(x, x_hat)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got, x_hat)
    (g_want,) = torch.autograd.grad(want, x_hat)
    torch.testing.assert_close(g_got, g_want)


def test_fired_latents_ignores_zero_values():
    from mmsae.models.base import fired_latents

    idx = torch.tensor([[0, 3], [3, 5], [2, 2]])
    val = torch.tensor([[0.5, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert fired_latents(idx, val, 6).tolist() == [True, False, True, False, False, False]


@pytest.mark.parametrize("arch", SINGLE)
def test_fold_normalization(arch):
    """Weights trained on (x − μ)·s, once folded, give codes/s and the same x̂ on raw x."""
    sae = _sae(arch)
    mean, scale = torch.randn(12), 3.7
    x = torch.randn(20, 12)
    out_norm = sae((x - mean) * scale)
    sae.fold_input_normalization_({ALL: (mean, scale)})
    out_raw = sae(x)
    torch.testing.assert_close(out_raw.codes_BF, out_norm.codes_BF / scale, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_raw.x_hat_BD, out_norm.x_hat_BD / scale + mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", SINGLE)
def test_save_load_roundtrip(tmp_path, arch):
    sae = _sae(arch)
    save_sae(sae, tmp_path / "sae", provenance={"seed": 1})
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg and loaded.provenance == {"seed": 1}
    x = torch.randn(5, 12)
    torch.testing.assert_close(loaded(x).codes_BF, sae.eval()(x).codes_BF)
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "sae" / "model.safetensors"))
    assert t["W_enc"].shape == (12, 40) and t["W_dec"].shape == (40, 12)
    assert t["b_enc"].shape == (40,) and t["b_dec"].shape == (12,)


def test_load_errors(tmp_path):
    with pytest.raises(SAELoadError, match="no such SAE folder"):
        load_sae(tmp_path / "nope")
    save_sae(_sae("topk"), tmp_path / "s")
    (tmp_path / "s" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(SAELoadError, match="damaged"):
        load_sae(tmp_path / "s")


def test_parallel_grad_removal_matches_its_formula_on_rows_of_any_norm():
    from mmsae.models.base import remove_parallel_grad_

    g = torch.Generator().manual_seed(4)
    W = torch.nn.Parameter(
        torch.randn(30, 7, generator=g, dtype=torch.float64) * torch.rand(30, 1, generator=g, dtype=torch.float64) * 5
    )
    G = torch.randn(30, 7, generator=g, dtype=torch.float64)
    W.grad = G.clone()
    remove_parallel_grad_(W)
    expected = torch.stack([G[f] - (G[f] @ W[f]) / (W[f] @ W[f]) * W[f] for f in range(30)]).detach()
    torch.testing.assert_close(W.grad, expected)


def test_relu_sparse_step_equals_the_dense_step():
    """Once codes are sparse a ReLU SAE trains through the sparse encoder and CSR decoding: the
    loss, its parts and every gradient equal the dense step's, in float64."""
    from mmsae.models.relu import ReLUConfig, ReLUSAE

    torch.manual_seed(2)
    sae = ReLUSAE(ReLUConfig(d_in=12, dict_size=64, l1_coef=0.3)).double()
    with torch.no_grad():
        sae.b_enc.normal_(-0.5, 0.3)  # about a quarter of the codes positive
    x = torch.randn(40, 12, dtype=torch.float64)
    outs, grads = [], []
    for path in (sae._sparse_loss, sae._dense_loss):
        out = path(x, 0.3)
        grads.append(torch.autograd.grad(out.loss, list(sae.parameters())))
        outs.append(out)
    sparse, dense = outs
    assert 0 < float(dense.l0) < 32
    torch.testing.assert_close(sparse.loss, dense.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sparse.x_hat_BD, dense.x_hat_BD, rtol=1e-12, atol=1e-12)
    assert float(sparse.l0) == float(dense.l0) and torch.equal(sparse.fired_F, dense.fired_F)
    for g_s, g_d in zip(*grads, strict=True):
        torch.testing.assert_close(g_s, g_d, rtol=1e-10, atol=1e-12)
    # the switch: dense while the last step's L0 was high, sparse after a sparse one
    sae._last_l0 = 64.0
    sae.training_loss({ALL: x})
    assert sae._last_l0 == float(dense.l0)
