"""VL-SAE against a direct transcription of its official formulas, on small inputs."""

import torch
import torch.nn.functional as F

from mmsae.models import VLSAE, VLSAEConfig, load_sae, save_sae


def _model(center=False, seed=0):
    torch.manual_seed(seed)
    m = VLSAE(VLSAEConfig(d_in=6, dict_size=10, k=3, center=center))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def test_activation_is_two_minus_distance_of_normalised_vectors():
    m = _model()
    x = torch.randn(5, 6) * 3
    # the official code: cdist between L2-normalised inputs and L2-normalised atoms (rows of a [F, D] matrix)
    expected = 2 - torch.cdist(F.normalize(x, dim=1), F.normalize(m.W_enc.T, dim=1))
    torch.testing.assert_close(m.pre_acts(x, "image"), expected, atol=1e-5, rtol=0)
    # so the encoding ignores the input's norm and the modality when not centring
    torch.testing.assert_close(m.encode(x, "image"), m.encode(7 * x, "text"))


def test_topk_keeps_the_k_largest_and_decoders_are_per_modality():
    m = _model()
    x = torch.randn(4, 6)
    pre = m.pre_acts(x, "image")
    z = m.encode(x, "image")
    assert ((z > 0).sum(dim=1) == 3).all()
    kth = pre.topk(3, dim=1).values[:, -1:]
    torch.testing.assert_close(z, torch.where(pre >= kth, pre, torch.zeros_like(pre)))
    torch.testing.assert_close(m.decode(z, "image"), z @ m.W_dec_image + m.b_dec_image)
    torch.testing.assert_close(m.decode(z, "text"), z @ m.W_dec_text + m.b_dec_text)
    assert not torch.allclose(m.decode(z, "image"), m.decode(z, "text"))


def test_loss_is_the_sum_of_both_reconstruction_errors():
    m = _model()
    v, t = torch.randn(8, 6), torch.randn(8, 6)
    out = m.training_loss({"image": v, "text": t})
    v_hat = m.encode(v, "image") @ m.W_dec_image + m.b_dec_image
    t_hat = m.encode(t, "text") @ m.W_dec_text + m.b_dec_text
    # official: nn.MSELoss()(v̂, v) + nn.MSELoss()(t̂, t); ours sums over D (×D, same optimum)
    expected = 6 * (F.mse_loss(v_hat, v) + F.mse_loss(t_hat, t))
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.recons["text"], t_hat, atol=1e-5, rtol=0)
    out.loss.backward()
    assert m.W_enc.grad is not None and m.W_enc.grad.abs().sum() > 0


def test_save_load_roundtrip_with_named_tensors(tmp_path):
    m = _model(center=True)
    with torch.no_grad():
        m.mean_image.copy_(torch.randn(6))
    save_sae(m, tmp_path / "v")
    from safetensors.torch import load_file

    names = set(load_file(str(tmp_path / "v" / "model.safetensors")))
    assert names == {"W_enc", "W_dec_image", "W_dec_text", "b_dec_image", "b_dec_text", "mean_image", "mean_text"}
    back = load_sae(tmp_path / "v")
    x = torch.randn(3, 6)
    torch.testing.assert_close(back(x, "image").x_hat_BD, m(x, "image").x_hat_BD)
    assert load_file(str(tmp_path / "v" / "model.safetensors"))["W_enc"].shape == (6, 10)


def test_folding_a_scale_gives_the_same_model_on_raw_inputs():
    m = _model(center=True)
    with torch.no_grad():
        m.mean_text.copy_(torch.randn(6))
    x, s = torch.randn(5, 6), 2.5
    trained_view = m(x * s, "text").x_hat_BD / s  # the model saw x·s during training
    m.fold_input_normalization_({"image": (torch.zeros(6), s), "text": (torch.zeros(6), s)})
    torch.testing.assert_close(m(x, "text").x_hat_BD, trained_view, atol=1e-5, rtol=1e-5)


def test_centring_subtracts_each_modalitys_mean():
    m = _model(center=True)
    mu = torch.randn(6)
    with torch.no_grad():
        m.mean_image.copy_(mu)
    x = torch.randn(4, 6)
    expected = 2 - torch.cdist(F.normalize(x - mu, dim=1), F.normalize(m.W_enc.T, dim=1))
    torch.testing.assert_close(m.pre_acts(x, "image"), expected, atol=1e-5, rtol=0)


def test_sparse_training_step_has_dense_autograds_gradients():
    """The training loss selects through the sparse TopK encoder (only the chosen latents get a
    gradient); its gradients equal autograd through the dense transcription, in float64."""
    for center in (False, True):
        m = _model(center=center, seed=3).double()
        m.cfg = VLSAEConfig(d_in=6, dict_size=40, k=5, center=center)
        with torch.no_grad():
            m.W_enc.data = torch.randn(6, 40, dtype=torch.float64)
            m.W_dec_image.data = torch.randn(40, 6, dtype=torch.float64)
            m.W_dec_text.data = torch.randn(40, 6, dtype=torch.float64)
        v, t = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 6, dtype=torch.float64)
        out = m.training_loss({"image": v, "text": t})
        got = torch.autograd.grad(out.loss, list(m.parameters()))
        expected = 6 * (
            F.mse_loss(m.encode(v, "image") @ m.W_dec_image + m.b_dec_image, v)
            + F.mse_loss(m.encode(t, "text") @ m.W_dec_text + m.b_dec_text, t)
        )
        want = torch.autograd.grad(expected, list(m.parameters()))
        torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=1e-12)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
