"""Steering: planted concepts on synthetic pairs, and a real CLIP direction (the LAION aesthetic head)."""

import numpy as np
import pytest

from mmsae.analysis.crossmodal import shared_concept_recovery
from mmsae.analysis.steering import concept_direction, edit_and_decode, nearest, probe_score, steer
from mmsae.data.synthetic import fresh_pairs, load_ground_truth, synth_config_of


def test_steer_keeps_norm_and_turns_toward_the_direction(rng):
    x = rng.standard_normal((4, 8))
    d = rng.standard_normal(8)
    out = steer(x, d, 2.0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    cos = lambda a: a @ d / (np.linalg.norm(a, axis=1) * np.linalg.norm(d))  # noqa: E731
    assert (cos(out) > cos(x)).all()
    np.testing.assert_allclose(steer(x, d, 0.0), x, rtol=1e-6)


def test_real_clip_aesthetic_direction(shared_data):
    """Real OpenAI CLIP ViT-B/32 image embeddings, steered along the LAION aesthetic head's weight:
    the head's score rises with the strength, and the nearest of the ten rating reference
    embeddings moves to a higher rating."""
    base = shared_data / "laion-aesthetic"
    head = np.load(base / "sa_0_4_vit_b_32_linear.npz")
    w, b = head["weight"].reshape(-1), float(head["bias"][0])
    x = np.load(shared_data / "clip-retrieval-vitb32" / "clip_vit_b32_image_embs.npy").astype(np.float32)
    refs = np.concatenate([np.load(base / "vit_b_32_embeddings" / f"rating{r}.npy") for r in range(10)])
    scores = [probe_score(steer(x, w, s), w, b) for s in (-0.5, 0.0, 0.25, 0.5)]
    for lo, hi in zip(scores, scores[1:]):
        assert (hi > lo).all()
    rating_before = nearest(x, refs, 1)[0][:, 0]
    rating_after = nearest(steer(x, w, 0.5), refs, 1)[0][:, 0]
    assert (rating_after >= rating_before).all() and rating_after.mean() > rating_before.mean() + 1


def test_concept_steering_retrieves_the_concept(small_synth, small_multimodal):
    """Steering images along a recovered shared concept, in image space or decoded into text space,
    makes their nearest neighbours carry that planted concept far more often."""
    cfg, gt = synth_config_of(small_synth), load_ground_truth(small_synth)
    rec = shared_concept_recovery(small_multimodal, cfg, gt, n_pairs=4000)
    img, txt, ci, ct = fresh_pairs(cfg, gt, 3000, seed=21)
    q, gal_img, gal_txt = img[:200], img[200:], txt[200:]
    gains = []
    for pc in [p for p in rec["per_concept"] if p["recovered"]][:5]:
        c, j = pc["concept"], pc["latent"]
        has_i, has_t = ci[200:, c] > 0, ct[200:, c] > 0
        d = concept_direction(small_multimodal, j, "image")
        in_img = has_i[nearest(steer(q, d, 0.5), gal_img, 10)[0]].mean() - has_i[nearest(q, gal_img, 10)[0]].mean()
        to_txt = edit_and_decode(small_multimodal, q, "image", "text", {j: 4.0})
        in_txt = has_t[nearest(to_txt, gal_txt, 10)[0]].mean() - has_t[nearest(q, gal_txt, 10)[0]].mean()
        gains.append((in_img, in_txt))
    gains = np.array(gains)
    assert len(gains) == 5
    assert (gains[:, 0] > 0.2).all(), gains
    assert (gains[:, 1] > 0.05).all(), gains


def test_edit_validates():
    from mmsae.models import build_sae

    sae = build_sae("topk", d_in=4, dict_size=8, k=2)
    with pytest.raises(ValueError, match="concept"):
        edit_and_decode(sae, np.ones((1, 4)), "image", "text", {9: 1.0})
    with pytest.raises(ValueError, match="mode"):
        edit_and_decode(sae, np.ones((1, 4)), "image", "text", {1: 1.0}, mode="mul")
    with pytest.raises(ValueError, match="concept"):
        concept_direction(sae, -1)
