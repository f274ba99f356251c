"""MultiModalSAE against a direct transcription of L = L_txt + λ_img L_img + λ_align ‖z_txt − z_img‖²."""

import pytest
import torch

from mmsae.models import ModalityRouter, MultiModalConfig, MultiModalSAE, as_paired, build_sae, load_sae, save_sae


def _model(**kw):
    torch.manual_seed(0)
    cfg = MultiModalConfig(
        **{
            "d_in": 5,
            "dict_size": 12,
            "d_image": 7,
            "d_text": 4,
            "k": 3,
            "lambda_image": 0.7,
            "lambda_align": 0.3,
            "aux_k": 0,
            **kw,
        }
    )
    m = MultiModalSAE(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def _dense_codes(m, x, mod):
    P, p, b = getattr(m, f"P_{mod}"), getattr(m, f"p_{mod}"), getattr(m, f"b_dec_{mod}")
    pre = ((x - b) @ P + p) @ m.W_enc + m.b_enc
    if m.cfg.sparsity == "l1":
        return torch.relu(pre)
    kth = pre.topk(m.cfg.k, dim=1).values[:, -1:]
    return torch.where(pre >= kth, torch.relu(pre), torch.zeros_like(pre))


@pytest.mark.parametrize("sparsity", ["topk", "l1"])
def test_loss_matches_transcription(sparsity):
    m = _model(sparsity=sparsity, l1_coef=0.2)
    img, txt = torch.randn(9, 7), torch.randn(9, 4)
    out = m.training_loss({"image": img, "text": txt}, step=10**6, total_steps=10)
    z_i, z_t = _dense_codes(m, img, "image"), _dense_codes(m, txt, "text")
    i_hat = z_i @ m.W_dec_image + m.b_dec_image
    t_hat = z_t @ m.W_dec_text + m.b_dec_text
    l_img = ((img - i_hat) ** 2).sum(1).mean()
    l_txt = ((txt - t_hat) ** 2).sum(1).mean()
    align = ((z_t - z_i) ** 2).sum(1).mean()
    expected = l_txt + 0.7 * l_img + 0.3 * align
    if sparsity == "l1":
        expected = expected + 0.2 * (
            (z_i * m.W_dec_image.norm(dim=1)).sum(1).mean() + (z_t * m.W_dec_text.norm(dim=1)).sum(1).mean()
        )
    torch.testing.assert_close(out.loss, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m.encode(img, "image"), z_i)
    assert out.recons["image"].shape == (9, 7) and out.recons["text"].shape == (9, 4)


def test_alignment_term_pulls_pair_codes_together():
    """Training on pairs whose two sides differ by a modality-specific linear map: more λ_align,
    closer codes."""
    torch.manual_seed(1)
    base = torch.relu(torch.randn(512, 12)) * (torch.rand(512, 12) < 0.25)
    A, B = torch.randn(12, 8), torch.randn(12, 6)
    img, txt = base @ A + 0.01 * torch.randn(512, 8), base @ B + 0.01 * torch.randn(512, 6)
    gaps = {}
    for lam in (0.0, 3.0):
        torch.manual_seed(0)
        m = MultiModalSAE(MultiModalConfig(d_in=8, dict_size=24, d_image=8, d_text=6, k=4, lambda_align=lam))
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for _ in range(300):
            loss = m.training_loss({"image": img, "text": txt}).loss
            opt.zero_grad()
            loss.backward()
            m.remove_parallel_grads_()
            opt.step()
            m.normalize_decoder_()
        with torch.no_grad():
            z_i, z_t = m.encode(img, "image"), m.encode(txt, "text")
            gaps[lam] = float(((z_t - z_i) ** 2).sum(1).mean() / ((z_t**2).sum(1).mean() + (z_i**2).sum(1).mean()))
    assert gaps[3.0] < 0.5 * gaps[0.0], gaps


def test_fold_normalisation_reproduces_the_trained_view():
    m = _model()
    img = torch.randn(6, 7) + 3
    mean, s = torch.randn(7), 1.7
    trained = m((img - mean) * s, "image")
    m.fold_input_normalization_({"image": (mean, s)})
    raw = m(img, "image")
    torch.testing.assert_close(raw.codes_BF, trained.codes_BF, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(raw.x_hat_BD, trained.x_hat_BD / s + mean, atol=1e-4, rtol=1e-4)


def test_unit_decoders_and_parallel_gradient_removal():
    m = _model()
    m.training_loss({"image": torch.randn(5, 7), "text": torch.randn(5, 4)}).loss.backward()
    m.normalize_decoder_()
    for mod in ("image", "text"):
        W = getattr(m, f"W_dec_{mod}")
        torch.testing.assert_close(W.norm(dim=1), torch.ones(12))
    m.remove_parallel_grads_()
    assert (m.W_dec_text.grad * m.W_dec_text).sum(1).abs().max() < 1e-5


def test_save_load_and_identity_projection_init(tmp_path):
    m = build_sae("multimodal", d_in=5, dict_size=12, k=3, d_image=5, d_text=5)
    torch.testing.assert_close(m.P_image, torch.eye(5))
    torch.testing.assert_close(m.W_dec_image, m.W_dec_text)  # one concept, one direction, at the start
    save_sae(m, tmp_path / "mm")
    back = load_sae(tmp_path / "mm")
    x = torch.randn(3, 5)
    torch.testing.assert_close(back(x, "text").x_hat_BD, m(x, "text").x_hat_BD)


def test_router_and_as_paired():
    a = build_sae("topk", d_in=4, dict_size=8, k=2)
    b = build_sae("topk", d_in=4, dict_size=8, k=2)
    x = torch.randn(3, 4)
    pooled = as_paired(a)
    torch.testing.assert_close(pooled(x, "text").codes_BF, a(x).codes_BF)
    router = as_paired({"image": a, "text": b})
    torch.testing.assert_close(router(x, "text").x_hat_BD, b(x).x_hat_BD)
    assert not router.shared_dictionary and pooled.shared_dictionary
    with pytest.raises(ValueError, match="dictionary size"):
        ModalityRouter({"image": a, "text": build_sae("topk", d_in=4, dict_size=16, k=2)})
    with pytest.raises(ValueError, match="modality"):
        pooled(x, "audio")


def test_sparse_topk_step_has_dense_autograds_gradients():
    """TopK sparsity trains through the sparse encoder, sparse decoding and a k × k alignment term;
    loss and every gradient equal autograd through the dense transcription (AuxK on dead latents
    included), in float64."""
    from mmsae.models.base import auxk_loss

    m = _model(dict_size=30, k=4, aux_k=5).double()
    dead_F = torch.zeros(30, dtype=torch.bool)
    dead_F[::3] = True
    img, txt = torch.randn(11, 7, dtype=torch.float64), torch.randn(11, 4, dtype=torch.float64)
    out = m.training_loss({"image": img, "text": txt}, dead_F)
    got = torch.autograd.grad(out.loss, list(m.parameters()))
    z, aux = {}, 0.0
    for mod, x in (("image", img), ("text", txt)):
        P, p, b = getattr(m, f"P_{mod}"), getattr(m, f"p_{mod}"), getattr(m, f"b_dec_{mod}")
        pre = ((x - b) @ P + p) @ m.W_enc + m.b_enc
        z[mod] = _dense_codes(m, x, mod)
        x_hat = z[mod] @ getattr(m, f"W_dec_{mod}") + b
        aux = aux + auxk_loss(getattr(m, f"W_dec_{mod}"), pre, x, x_hat, dead_F, 5)
        z[mod + "_mse"] = ((x - x_hat) ** 2).sum(1).mean()
    align = ((z["text"] - z["image"]) ** 2).sum(1).mean()
    expected = z["text_mse"] + 0.7 * z["image_mse"] + 0.3 * align + m.cfg.aux_coef * aux
    want = torch.autograd.grad(expected, list(m.parameters()))
    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    assert out.parts["auxk"] > 0
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)
