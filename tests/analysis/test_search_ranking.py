"""Rows for a text query are ranked by how strongly the query fires each concept, not by the raw
activation of its concepts alone (issue 18, defect 2)."""

import numpy as np

from mmsae.analysis.search import query_weights, rank_rows


def _tops(acts_KF, ids_KF):
    return {"image": (np.asarray(acts_KF, np.float32), np.asarray(ids_KF, np.int64))}


def test_a_concept_the_query_barely_fires_does_not_outrank_the_one_it_is_about():
    # concept 0 ("cat"): the query fires it at 0.9; its rows 0-2 at activation 1
    # concept 1 ("night"): the query fires it at 0.1; its rows 3-5 at activation 4 (stronger rows)
    tops = _tops([[1.0, 4.0], [1.0, 4.0], [1.0, 4.0]], [[0, 3], [1, 4], [2, 5]])
    found = {"by_encoding": [{"concept": 0, "activation": 0.9}, {"concept": 1, "activation": 0.1}]}
    rows = rank_rows(tops, query_weights(found, 5), "image", k=6)
    assert [r["row"] for r in rows[:3]] == [0, 1, 2]
    np.testing.assert_allclose([r["score"] for r in rows], [0.9, 0.9, 0.9, 0.4, 0.4, 0.4], rtol=1e-6)


def test_scores_add_over_concepts_and_empty_slots_are_skipped():
    tops = _tops([[2.0, 1.0], [1.0, 0.0]], [[7, 7], [8, -1]])
    rows = rank_rows(tops, [(0, 1.0), (1, 0.5)], "image", k=10)
    assert rows == [{"row": 7, "score": 2.5}, {"row": 8, "score": 1.0}]
    assert rank_rows(tops, [(0, 1.0)], "text") == []


def test_name_only_concepts_weigh_as_much_as_the_strongest_encoded_one():
    found = {
        "by_encoding": [{"concept": 3, "activation": 0.7}, {"concept": 4, "activation": 0.2}],
        "by_name": [{"concept": 4}, {"concept": 9}],
    }
    assert query_weights(found, 5) == [(3, 0.7), (4, 0.2), (9, 0.7)]
    assert query_weights({"by_name": [{"concept": 1}]}, 5) == [(1, 1.0)]
    assert query_weights(found, 2) == [(3, 0.7), (4, 0.2)]
