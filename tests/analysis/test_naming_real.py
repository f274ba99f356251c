"""Real data: concepts of a TopK SAE on MiniLM caption embeddings, named from the SpLiCE COCO
vocabulary, occur in their own top captions. The full-size figure (25,014 captions, whole
vocabulary) is in the closing note of the naming issue; this is the CI-sized version."""

import numpy as np

from mmsae.analysis.naming import embed_vocabulary, name_concepts, naming_agreement, read_vocabulary
from mmsae.analysis.top_examples import texts_of, top_examples
from mmsae.metrics.evaluate import evaluate_store


def test_names_occur_in_top_captions(minilm_store, minilm_sae, shared_data):
    terms = read_vocabulary(shared_data / "splice/vocab/mscoco.txt")
    assert "the" not in terms and "of" not in terms and all(len(t) >= 3 for t in terms)
    terms = terms[-4000:]  # the file runs from least to most frequent: the 4,000 most frequent terms
    E = embed_vocabulary(minilm_store, terms, templates=("a photo of a {}.",))
    assert E.shape == (4000, 384)
    E2 = embed_vocabulary(minilm_store, terms, templates=("a photo of a {}.",))  # cached in the store
    np.testing.assert_array_equal(E, E2)
    tops = top_examples(minilm_sae, minilm_store, k=10)
    texts = texts_of(minilm_store, tops)
    freq = evaluate_store(minilm_sae, minilm_store).frequency_F.numpy()
    frequent = np.argsort(-freq)[:200]
    shares = {}
    for method in ("decoder", "encoder"):
        names = name_concepts(minilm_sae, E, terms, method=method)
        shares[method] = naming_agreement(names, texts, frequent)["share"]
    print("share of the 200 most frequent concepts named by a word in ≥ 5 of their top-10 captions:", shares)
    assert shares["decoder"] >= 0.6 and shares["encoder"] >= 0.6, shares
