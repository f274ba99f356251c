import numpy as np

from mmsae.data.store import EmbeddingStore
from mmsae.data.synthetic import SynthConfig, generate_chunk, load_ground_truth, planted_dictionary, recovery


def test_defaults_calibrated_to_clip_vitb32(shared_data):
    """Default geometry lands near real CLIP ViT-B/32 statistics (the real data, MMSAE_SHARED_DATA)."""
    import json

    real_mean_norm = float(np.linalg.norm(np.load(shared_data / "splice/means/clip_ViT-B-32_image.npy")))
    sims = json.loads((shared_data / "openai-clip/skimage_similarity_vitb32.json").read_text())
    mat = np.array(sims["cosine_similarity"], dtype=float)
    real_matched = float(np.diag(mat).mean())
    real_unmatched = float(mat[~np.eye(len(mat), dtype=bool)].mean())

    cfg = SynthConfig()
    img, txt, _, _ = generate_chunk(cfg, planted_dictionary(cfg), 0, 4000)
    mean_norm = float(np.linalg.norm(img.mean(0)))
    ii = (img[:1000] @ img[1000:2000].T).ravel()
    matched = float((img * txt).sum(1).mean())
    unmatched = float((img[:2000] @ txt[2000:].T).mean())
    assert abs(mean_norm - real_mean_norm) < 0.05, (mean_norm, real_mean_norm)
    assert 0.45 <= np.median(ii) <= 0.7 and np.quantile(ii, 0.9) <= 0.75
    assert abs(matched - real_matched) < 0.05, (matched, real_matched)
    assert abs(unmatched - real_unmatched) < 0.04, (unmatched, real_unmatched)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)


def test_store_and_ground_truth(small_synth):
    st = EmbeddingStore(small_synth)
    gt = load_ground_truth(small_synth)
    assert len(st) == 8000 and st.manifest.counts == {"image": 4000, "text": 4000}
    assert gt.codes.shape == (8000, 96)
    kinds = np.array(gt.kinds)
    mods = st.modalities()
    codes = gt.codes.toarray()
    # image-only concepts never fire on text rows and vice versa; shared ones fire on both
    assert codes[mods == "text"][:, kinds == "image"].sum() == 0
    assert codes[mods == "image"][:, kinds == "text"].sum() == 0
    img, txt = st.pairs()
    shared = kinds == "shared"
    np.testing.assert_array_equal(codes[img][:, shared] > 0, codes[txt][:, shared] > 0)
    # heavy-tailed frequencies: the most frequent concept fires far more often than the rarest
    freq = (codes > 0).mean(0)
    assert freq.max() > 3 * freq[freq > 0].min()
    # each row is its planted code plus a multiple of its modality's offset plus small noise
    x = st.all_embeddings()
    for m in ("image", "text"):
        resid = (x - codes @ gt.dictionary_CD)[mods == m]
        u = np.linalg.svd(resid, full_matrices=False)[2][0]
        left = resid - np.outer(resid @ u, u)
        assert np.linalg.norm(left, axis=1).mean() < 0.12


def test_recovery_metric():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((10, 16))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    share, best = recovery(np.vstack([d[:7] * 3.0, rng.standard_normal((5, 16))]), d)
    assert share == 0.7 and np.allclose(best[:7], 1.0)
