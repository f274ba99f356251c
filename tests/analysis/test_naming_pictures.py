"""Naming concepts from pictures (`naming.name_by_pictures`, `mmsae name --method pictures`):
against a direct transcription of the correlation on small inputs, on planted concepts, and the
command on a tiny CLIP's patch tokens with a pooled store of the same pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mmsae.analysis.naming import name_by_pictures
from mmsae.cli.main import main


def _direct(acts_PF, img_PD, E_TD):
    """Pearson correlation over pictures of each concept's activation with each term's cosine."""
    img = img_PD / np.linalg.norm(img_PD, axis=1, keepdims=True)
    E = E_TD / np.linalg.norm(E_TD, axis=1, keepdims=True)
    S_PT = img @ E.T
    out = np.zeros((acts_PF.shape[1], len(E)))
    for f in range(acts_PF.shape[1]):
        for t in range(len(E)):
            a, b = acts_PF[:, f], S_PT[:, t]
            out[f, t] = 0.0 if a.std() == 0 else np.corrcoef(a, b)[0, 1]
    return out


def test_scores_equal_the_correlation_written_out():
    rng = np.random.default_rng(0)
    P, D, T, F = 40, 8, 6, 7
    img, E = rng.standard_normal((P, D)), rng.standard_normal((T, D))
    acts = np.maximum(rng.standard_normal((P, F)), 0) * (rng.random((P, F)) < 0.4)
    acts[:, 3] = 0.0  # a dead concept
    want = _direct(acts, img, E)
    terms = [f"t{i}" for i in range(T)]
    for given in (acts, sp.csr_matrix(acts)):
        names = name_by_pictures(given, img, E, terms, top=T, block=3)  # blocks cut the concepts
        assert [n.concept for n in names] == list(range(F))
        for n in names:
            got = dict(zip(n.terms, n.scores))
            np.testing.assert_allclose([got[t] for t in terms], want[n.concept], atol=1e-9)
            best = int(np.argmax(want[n.concept]))
            assert n.name == (terms[best] if want[n.concept, best] > 0 else None)
    assert names[3].name is None


def test_planted_concepts_get_their_terms():
    """A concept that fires on pictures near term t (its activation grows with their cosine to t)
    is named t, against other terms and distractors."""
    rng = np.random.default_rng(1)
    P, D, T = 400, 32, 30
    E = rng.standard_normal((T, D))
    img = rng.standard_normal((P, D)) + 0.8 * E[rng.integers(0, T, P)]
    planted = [2, 11, 17, 29]
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (E / np.linalg.norm(E, axis=1, keepdims=True)).T
    acts = np.stack([np.maximum(cos[:, t] - 0.2, 0) + 0.02 * rng.random(P) for t in planted], 1)
    names = name_by_pictures(acts, img, E, [f"w{i}" for i in range(T)])
    assert [n.name for n in names] == [f"w{t}" for t in planted]
    with pytest.raises(Exception, match="at least 3 pictures"):
        name_by_pictures(acts[:2], img[:2], E, [f"w{i}" for i in range(T)])


def test_name_on_patch_tokens_goes_through_the_pictures(patch_run, tiny_clip, tmp_path, capsys):
    """`mmsae name` on a patch store asks for --pictures (one line), then names every concept from
    the pooled store's pictures exactly as the function does on the same activations."""
    from mmsae.analysis.codes import picture_activations
    from mmsae.analysis.heatmaps import patch_pictures
    from mmsae.analysis.naming import embed_vocabulary
    from mmsae.data.store import EmbeddingStore
    from mmsae.models.io import load_sae

    t = patch_run
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("red\ngreen\nblue\ncircle\nsquare\nstar\nnoise\ndog\n")
    base = ["name", str(t / "sae"), str(t / "s"), "--vocab", str(vocab), "--out", str(tmp_path / "n")]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "--pictures POOLED" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--pictures", str(t / "s")]) == 2  # token rows are not pooled embeddings
    assert "holds token rows" in capsys.readouterr().err
    assert main(["embed", str(t / "pics"), "--model", f"hf:{tiny_clip}", "--out", str(t / "pooled"),
                 "--workers", "0", "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*base, "--pictures", str(t / "pooled"), "--per-image", "mean", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "pictures" and out["pictures_matched"] == 24 and out["per_image"] == "mean"
    written = json.loads((tmp_path / "n" / "names.json").read_text())["concepts"]
    store, pooled = EmbeddingStore(t / "s"), EmbeddingStore(t / "pooled")
    pictures, acts = picture_activations(load_sae(t / "sae"), store, patch_pictures(store), "mean")
    sources = store.metadata(["source"]).column("source").to_pylist()
    extras = store.extras(range(len(store)))
    first = {e["image"]: sources[r] for r, e in reversed(list(enumerate(extras)))}
    row_of = {s: r for r, s in enumerate(pooled.metadata(["source"]).column("source").to_pylist())}
    img = pooled.get([row_of[first[int(p)]] for p in pictures])
    terms = [ln.strip() for ln in vocab.read_text().splitlines()]
    E = embed_vocabulary(pooled, terms, templates=("a photo of a {}.",))
    want = name_by_pictures(acts, img, E, terms)
    assert [c["name"] for c in written] == [n.name for n in want]
    np.testing.assert_allclose([c["scores"] for c in written], [n.scores for n in want], rtol=1e-5)
    assert main([*base, "--method", "decoder", "--pictures", str(t / "pooled")]) == 2
    assert "--pictures goes with --method pictures" in capsys.readouterr().err
    assert main([*base, "--method", "decoder", "--per-image", "mean"]) == 2
    assert "--per-image goes with --method pictures" in capsys.readouterr().err
