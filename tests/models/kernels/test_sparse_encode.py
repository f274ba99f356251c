"""The sparse TopK backward equals dense autograd through `topk` (a direct transcription)."""

import pytest
import torch
import torch.nn.functional as F

from mmsae.models.kernels.sparse_encode import batch_topk_encode, topk_encode


def _problem(B, D, F_, n_dead, seed):
    """Random float64 inputs, SAE weights and a dead-latent mask of n_dead latents (None for 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) + 2.0  # an offset, like CLIP: some pre-acts negative
    params = [
        torch.randn(D, F_, generator=g, dtype=torch.float64) / D**0.5,
        0.1 * torch.randn(F_, generator=g, dtype=torch.float64),
        torch.randn(D, generator=g, dtype=torch.float64),
        torch.randn(F_, D, generator=g, dtype=torch.float64) / D**0.5,
    ]
    dead = None
    if n_dead:
        dead = torch.zeros(F_, dtype=torch.bool)
        dead[torch.randperm(F_, generator=g)[:n_dead]] = True
    return x, params, dead


def _aux(recon_BD, x, x_hat):
    """AuxK term (weight 0.1): normalised MSE of the dead latents' reconstruction of the fixed residual."""
    res = (x - x_hat).detach()
    return 0.1 * ((recon_BD - res).pow(2).sum(-1).mean() / (res - res.mean(0)).pow(2).sum(-1).mean())


def _assert_same_loss_and_grads(reference, sparse, x, params, sel, dead, aux_k):
    """Loss and gradients of (W_enc, b_enc, b_dec, W_dec) agree to float64 tolerance; returns the reference's."""
    out = []
    for fn in (reference, sparse):
        ps = [p.clone().requires_grad_(True) for p in params]
        loss = fn(x, *ps, sel, dead, aux_k)
        loss.backward()
        out.append((loss.detach(), [p.grad for p in ps]))
    (l0, g0), (l1, g1) = out
    torch.testing.assert_close(l1, l0)
    for name, a, b in zip(("W_enc", "b_enc", "b_dec", "W_dec"), g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10, msg=name)
    return g0


def _dense_reference(x, W_enc, b_enc, b_dec, W_dec, k, dead, aux_k):
    """Loss of a TopK SAE with AuxK, written with dense tensors and plain autograd."""
    pre = (x - b_dec) @ W_enc + b_enc
    val, idx = pre.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, F.relu(val))
    x_hat = z @ W_dec + b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if dead is not None and aux_k:
        a = min(aux_k, int(dead.sum()))
        aval, aidx = pre.masked_fill(~dead, float("-inf")).topk(a, dim=1)
        loss = loss + _aux(torch.zeros_like(pre).scatter(1, aidx, F.relu(aval)) @ W_dec, x, x_hat)
    return loss


def _sparse(x, W_enc, b_enc, b_dec, W_dec, k, dead, aux_k, masked=None):
    idx, val, aidx, aval = topk_encode(x, W_enc, b_enc, b_dec, k, dead, aux_k, masked=masked)
    x_hat = F.embedding_bag(idx, W_dec, per_sample_weights=val, mode="sum") + b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if aidx.shape[1]:
        loss = loss + _aux(F.embedding_bag(aidx, W_dec, per_sample_weights=aval, mode="sum"), x, x_hat)
    return loss


@pytest.mark.parametrize(
    "B, D, F_, k, n_dead, aux_k",
    [(64, 16, 96, 4, 0, 0), (37, 12, 80, 7, 30, 16), (50, 8, 40, 3, 5, 16), (128, 32, 256, 16, 100, 64)],
)
@pytest.mark.parametrize("masked", [False, True], ids=["dead-columns", "masked"])
def test_gradients_equal_dense_autograd(B, D, F_, k, n_dead, aux_k, masked):
    """Both AuxK selections: among the dead columns (CPU), and among all columns with the live
    ones masked (other devices, where reading the dead latents' ids would wait for the device)."""
    x, params, dead = _problem(B, D, F_, n_dead, seed=B)

    def sparse(*args):
        return _sparse(*args, masked=masked)

    g0 = _assert_same_loss_and_grads(_dense_reference, sparse, x, params, k, dead, aux_k)
    assert (g0[1] != 0).sum() > 0  # some latent got a gradient: the comparison is not vacuous


@pytest.mark.parametrize("n_dead", [3, 40])
def test_both_auxk_selections_choose_the_same_latents(n_dead):
    """min(aux_k, n_dead) columns either way (10 or 3 here), the same latents and values."""
    x, (W_enc, b_enc, b_dec, _), dead = _problem(40, 8, 48, n_dead, seed=3)
    _, _, midx, mval = topk_encode(x, W_enc, b_enc, b_dec, 4, dead, 10, masked=True)
    _, _, didx, dval = topk_encode(x, W_enc, b_enc, b_dec, 4, dead, 10, masked=False)
    assert midx.shape == didx.shape == (40, min(10, n_dead)) and dead[midx].all()
    assert torch.equal(midx, didx) and torch.equal(mval, dval)


def test_input_gradient_when_asked():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 6, generator=g, dtype=torch.float64, requires_grad=True)
    W, be, bd = (
        torch.randn(6, 20, generator=g, dtype=torch.float64),
        torch.zeros(20, dtype=torch.float64),
        torch.zeros(6, dtype=torch.float64),
    )
    idx, val, _, _ = topk_encode(x, W, be, bd, 3)
    (val**2).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    v2, _ = ((x2 - bd) @ W + be).topk(3, dim=1)
    (F.relu(v2) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_bfloat16_selection_keeps_exact_values_and_gradients():
    """bf16 chooses the latents; the values equal the fp32 pre-activations of the chosen latents,
    sorted; the choice matches fp32 except near-ties; the gradients are those of that choice."""
    g = torch.Generator().manual_seed(7)
    B, D, F_, k = 256, 64, 512, 16
    x = torch.randn(B, D, generator=g) + 1.0
    W = (torch.randn(D, F_, generator=g) / D**0.5).requires_grad_(True)
    be, bd = torch.zeros(F_, requires_grad=True), torch.zeros(D, requires_grad=True)
    idx, val, _, _ = topk_encode(x, W, be, bd, k, select_dtype=torch.bfloat16)
    pre = (x - bd) @ W + be
    torch.testing.assert_close(val, F.relu(pre.gather(1, idx)), rtol=1e-5, atol=1e-6)
    assert (val[:, :-1] >= val[:, 1:]).all()
    _, idx32 = pre.topk(k, dim=1)
    same = (idx.sort(1).values == idx32.sort(1).values).all(1).float().mean()
    assert same > 0.5  # most rows choose exactly the fp32 set
    overlap = torch.tensor([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(idx, idx32)]).float().mean() / k
    assert overlap > 0.97
    (val.pow(2).sum()).backward()
    ref = [t.detach().clone().requires_grad_(True) for t in (W, be, bd)]
    v2 = F.relu(((x - ref[2]) @ ref[0] + ref[1]).gather(1, idx))
    v2.pow(2).sum().backward()
    for a, b in zip((W, be, bd), ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def _batch_dense_reference(x, W_enc, b_enc, b_dec, W_dec, n, dead, aux_k):
    pre = (x - b_dec) @ W_enc + b_enc
    flat = F.relu(pre).flatten()
    val, idx = flat.topk(n)
    z = torch.zeros_like(flat).scatter(0, idx, val).view_as(pre)
    x_hat = z @ W_dec + b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if dead is not None and aux_k:
        a = min(aux_k, int(dead.sum()))
        aval, aidx = pre.masked_fill(~dead, float("-inf")).topk(a, dim=1)
        loss = loss + _aux(torch.zeros_like(pre).scatter(1, aidx, F.relu(aval)) @ W_dec, x, x_hat)
    return loss


def _batch_sparse(x, W_enc, b_enc, b_dec, W_dec, n, dead, aux_k):
    from mmsae.models.kernels.sparse_encode import batch_topk_encode

    rows, cols, vals, aidx, aval = batch_topk_encode(x, W_enc, b_enc, b_dec, n, dead, aux_k)
    offsets = torch.zeros(len(x), dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.bincount(rows, minlength=len(x)), 0)[:-1]
    x_hat = F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=vals) + b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if aidx.shape[1]:
        loss = loss + _aux(F.embedding_bag(aidx, W_dec, per_sample_weights=aval, mode="sum"), x, x_hat)
    return loss


@pytest.mark.parametrize(
    "B, D, F_, k, n_dead, aux_k", [(64, 16, 96, 4, 0, 0), (37, 12, 80, 7, 30, 16), (128, 32, 256, 16, 100, 64)]
)
def test_batch_topk_gradients_equal_dense_autograd(B, D, F_, k, n_dead, aux_k):
    x, params, dead = _problem(B, D, F_, n_dead, seed=B + 1)
    g0 = _assert_same_loss_and_grads(_batch_dense_reference, _batch_sparse, x, params, B * k, dead, aux_k)
    assert (g0[1] != 0).sum() > 0


@pytest.mark.parametrize("which", ["topk", "batchtopk"])
def test_input_gradient_with_auxk_passes_gradcheck(which):
    """∂x from the pairs in row order (one embedding_bag), the AuxK pairs of every row included;
    BatchTopK's pairs come as its batch-wide choice followed by the AuxK choice, not in row order."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(5, 24, generator=g, dtype=torch.float64)
    be, bd = 0.1 * torch.randn(24, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    dead = torch.zeros(24, dtype=torch.bool)
    dead[::2] = True

    def f(x):
        if which == "topk":
            _, val, _, aval = topk_encode(x, W, be, bd, 3, dead, 4)
            return (val * torch.arange(1.0, 4.0, dtype=val.dtype)).sum(1), aval.pow(2).sum(1)
        _, _, vals, _, aval = batch_topk_encode(x, W, be, bd, 20, dead, 4)
        return vals.pow(2), aval.pow(2).sum(1)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)
