"""Hallucination detection and mitigation on planted concept swaps."""

import numpy as np
import pytest

from mmsae.analysis.hallucination import (
    HallucinationDetector,
    best_f1_threshold,
    clip_score,
    compare_with_clip_score,
    mitigation_effect,
    own_image_retrieval,
)
from mmsae.data.synthetic import fresh_pairs, hallucination_set, load_ground_truth, synth_config_of


def test_best_f1_threshold_matches_brute_force(rng):
    s = np.round(rng.random(200), 2)  # ties on purpose
    y = (s + 0.3 * rng.standard_normal(200)) > 0.6
    t = best_f1_threshold(s, y)

    def f1(th):
        p = s >= th
        tp = (p & y).sum()
        return 2 * tp / (p.sum() + y.sum())

    assert f1(t) == pytest.approx(max(f1(th) for th in np.unique(s)))


def test_planted_swaps_are_what_they_claim(small_synth):
    cfg, gt = synth_config_of(small_synth), load_ground_truth(small_synth)
    img, txt, lab, swapped = hallucination_set(cfg, gt, 400, seed=1)
    assert img.shape == txt.shape == (400, 64) and 0.35 < lab.mean() < 0.65
    kinds = np.array(gt.kinds)
    assert (swapped[lab == 1] >= 0).all() and (swapped[lab == 0] == -1).all()
    assert (kinds[swapped[lab == 1]] == "shared").all()
    # a swap lowers the raw image-caption cosine on average: the task is real, but not trivial
    cs = clip_score(img, txt)
    assert cs[lab == 1].mean() < cs[lab == 0].mean()


def test_detector_beats_raw_cosine_on_planted_swaps(small_synth, small_multimodal):
    cfg, gt = synth_config_of(small_synth), load_ground_truth(small_synth)
    ref_img, ref_txt, _, _ = fresh_pairs(cfg, gt, 8000, seed=3)
    det = HallucinationDetector.fit(small_multimodal, ref_img, ref_txt)
    # text-only planted concepts never appear on images, so their latents get ~zero weight
    img, txt, lab, _ = hallucination_set(cfg, gt, 3000, seed=4)
    scores = det.score(small_multimodal, img, txt)
    assert ((scores >= 0) & (scores <= 1)).all()
    res = compare_with_clip_score(scores, clip_score(img, txt), lab)
    assert res["sae"]["f1"] > res["clip_score"]["f1"] and res["sae"]["auroc"] > res["clip_score"]["auroc"], res


def test_mitigation_brings_corrupted_captions_back_to_their_image(small_synth, small_multimodal):
    cfg, gt = synth_config_of(small_synth), load_ground_truth(small_synth)
    img, txt, lab, _ = hallucination_set(cfg, gt, 1000, seed=5)
    res = mitigation_effect(small_multimodal, img, txt, lab, n_concepts=4, beta=1.0)
    assert res["after"]["mean_rank"] < 0.7 * res["before"]["mean_rank"], res
    assert res["after"]["recall@1"] > res["before"]["recall@1"]
    # β = 0 changes nothing but the reconstruction: no gain from the image's concepts
    none = mitigation_effect(small_multimodal, img, txt, lab, n_concepts=4, beta=0.0)
    assert none["after"]["mean_rank"] > res["after"]["mean_rank"]


def test_own_image_retrieval():
    img = np.eye(3)
    txt = np.array([[1, 0, 0], [0, 0.2, 1], [0, 0, 1]])
    r = own_image_retrieval(txt, img, [0, 1, 2])
    assert r["recall@1"] == pytest.approx(2 / 3) and r["mean_rank"] == pytest.approx(4 / 3)


def test_zero_shot_retention_on_the_planted_task(small_synth, small_multimodal):
    from mmsae.analysis.crossmodal import synthetic_zero_shot

    res = synthetic_zero_shot(small_multimodal, synth_config_of(small_synth), load_ground_truth(small_synth), n=2000)
    assert res["original"] > 0.3  # 20 classes: chance is 0.05
    assert res["recon_both_relative"] > 0.7, res
