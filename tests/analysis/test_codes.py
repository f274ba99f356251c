"""Sparse codes of a store and the running top lists: against dense codes and a full stable sort."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsae.analysis.codes import TopTracker, code_blocks, sparse_codes
from mmsae.models.relu import ReLUConfig, ReLUSAE
from mmsae.models.topk import TopKConfig, TopKSAE


def _brute_top(rows, cols, vals, F, k):
    """Each concept's k largest positive values, ties to the earlier row (a stable sort)."""
    v_KF, r_KF = np.zeros((k, F), np.float32), np.full((k, F), -1)
    for c in range(F):
        m = (cols == c) & (vals > 0)
        r, v = rows[m], vals[m]
        order = np.argsort(-v, kind="stable")[:k]  # rows arrive ascending, so stable = earlier row first
        v_KF[: len(order), c], r_KF[: len(order), c] = v[order], r[order]
    return v_KF, r_KF


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 5),
    st.integers(1, 6),
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
)
def test_tracker_equals_a_stable_sort(seed, F, k, block_sizes):
    """Values drawn from a handful of levels (many ties, zeros and negatives too), offered in
    blocks of arbitrary sizes: the kept lists equal a stable sort of each whole column."""
    rng = np.random.default_rng(seed)
    n = sum(block_sizes)
    rows = np.sort(rng.choice(10 * n, n, replace=False))
    cols = rng.integers(0, F, n)
    vals = rng.integers(-2, 5, n).astype(np.float32) / 2
    t = TopTracker(F, k)
    lo = 0
    for b in block_sizes:
        t.add(rows[lo : lo + b], cols[lo : lo + b], vals[lo : lo + b])
        lo += b
    v, r = t.result()
    bv, br = _brute_top(rows, cols, vals, F, k)
    np.testing.assert_array_equal(r, br)
    np.testing.assert_array_equal(v, bv)


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_sparse_codes_equal_dense_codes(arch):
    torch.manual_seed(0)
    sae = TopKSAE(TopKConfig(d_in=24, dict_size=160, k=7)) if arch == "topk" else ReLUSAE(ReLUConfig(24, 160))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    x = torch.randn(700, 24)  # more rows than one CPU block of the TopK path
    Z = sae.encode(x).detach().numpy()
    r, c, v = sparse_codes(sae, x, np.array(["image"] * 700))
    dense = np.zeros_like(Z)
    dense[r, c] = v
    assert (Z != 0).sum() == len(v) > 0
    np.testing.assert_allclose(dense, Z, rtol=1e-5, atol=1e-6)
    assert (np.diff(r) >= 0).all()


def test_code_blocks_of_a_paired_sae(small_synth, small_multimodal):
    """A paired SAE (dense codes, each row by its modality's encoder): the blocks hold the chosen
    rows in order and their codes equal the routed dense encoding."""
    from mmsae.data.store import EmbeddingStore
    from mmsae.metrics.evaluate import routed_encode

    store = EmbeddingStore(small_synth)
    mods = store.modalities()
    text_rows = np.nonzero(mods == "text")[0]
    got = np.zeros((len(store), small_multimodal.cfg.dict_size), np.float32)
    seen = []
    for blk in code_blocks(small_multimodal, store, block=333, modalities=("text",)):
        assert (blk.mods_B == "text").all() and (np.diff(blk.r_N) >= 0).all()
        got[blk.rows_B[blk.r_N], blk.c_N] = blk.v_N
        seen.append(blk.rows_B)
    np.testing.assert_array_equal(np.concatenate(seen), text_rows)
    X = torch.as_tensor(store.all_embeddings()[text_rows])
    Z = routed_encode(small_multimodal, X, mods[text_rows]).detach().numpy()
    np.testing.assert_allclose(got[text_rows], Z, rtol=1e-5, atol=1e-6)
    assert (got[mods != "text"] == 0).all()


@pytest.mark.parametrize("how", ["max", "mean"])
def test_picture_codes_equal_per_picture_brute_force(how):
    """Pictures of uneven patch counts, class-token rows (-1) among them, blocks that cut pictures:
    each (picture, concept) once, valued as `pointing.per_image` values it, at the right row."""
    from mmsae.analysis.codes import CodeBlock, picture_codes
    from mmsae.analysis.pointing import per_image

    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, 30)
    picture_R = np.concatenate([np.r_[-1, np.full(n, p)] for p, n in enumerate(sizes)])  # a class token first
    R, F = len(picture_R), 11
    Z = np.where(rng.random((R, F)) < 0.3, rng.integers(1, 6, (R, F)) / 2, 0).astype(np.float32)
    blocks, lo = [], 0
    for n in rng.integers(1, 17, 100):
        rows = np.arange(lo, min(lo + n, R))
        if not len(rows):
            break
        r, c = np.nonzero(Z[rows])
        blocks.append(CodeBlock(rows, np.full(len(rows), "image"), r, c, Z[rows][r, c]))
        lo += n
    got = np.zeros((len(sizes), F))
    at = np.full((len(sizes), F), -1)
    seen = set()
    for rows_N, c_N, v_N in picture_codes(iter(blocks), picture_R, how):
        for r, c, v in zip(rows_N, c_N, v_N):
            p = picture_R[r]
            assert (p, c) not in seen and p >= 0
            seen.add((p, c))
            got[p, c], at[p, c] = v, r
    patch = picture_R >= 0
    want = per_image(Z[patch], picture_R[patch], len(sizes), how)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for p, c in seen:
        rows = np.flatnonzero(picture_R == p)
        assert at[p, c] == (rows[np.argmax(Z[rows, c])] if how == "max" else rows[0])


def test_picture_codes_refuse_pictures_split_across_the_store_and_empty_inputs_encode():
    from mmsae.analysis.codes import CodeBlock, picture_codes
    from mmsae.errors import MmsaeError
    from mmsae.models.kernels.sparse_encode import relu_encode

    picture_R = np.array([0, 0, 1, 1, 0, 0])  # picture 0 comes back after picture 1
    blk = CodeBlock(np.arange(6), np.full(6, "image"), np.arange(6), np.zeros(6, int), np.ones(6, np.float32))
    with pytest.raises(MmsaeError, match="not contiguous"):
        list(picture_codes(iter([blk]), picture_R, "max"))
    sae = TopKSAE(TopKConfig(d_in=8, dict_size=32, k=3))
    assert all(len(t) == 0 for t in sae.encode_sparse(torch.zeros(0, 8)))
    assert all(len(t) == 0 for t in relu_encode(torch.zeros(0, 8), sae.W_enc, sae.b_enc, sae.b_dec))
