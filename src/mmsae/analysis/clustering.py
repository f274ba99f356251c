"""k-means over SAE codes (docs/formulas.md §6): groups of rows that use the same concepts, each with its
dominant concepts (largest mean activation in the cluster) and the rows closest to its centre."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmsae.analysis.naming import ConceptName
from mmsae.vectors import unit_rows


def cluster_codes(
    codes_NF: np.ndarray,
    n_clusters: int = 20,
    names: list[ConceptName] | None = None,
    top_concepts: int = 5,
    examples: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """MiniBatchKMeans on L2-normalised codes (cosine geometry, like similar-image search)."""
    from sklearn.cluster import MiniBatchKMeans

    Z = np.asarray(codes_NF, dtype=np.float32)
    Zn = unit_rows(Z)
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096).fit(Zn)
    dist = km.transform(Zn)
    clusters = []
    for c in range(n_clusters):
        members = np.nonzero(km.labels_ == c)[0]
        if len(members) == 0:
            continue
        mean = Z[members].mean(axis=0)
        dom = np.argsort(-mean)[:top_concepts]
        near = members[np.argsort(dist[members, c])[:examples]]
        clusters.append(
            {
                "cluster": c,
                "size": int(len(members)),
                "concepts": [
                    {"concept": int(j), "mean_activation": float(mean[j]), "name": names[j].name if names else None}
                    for j in dom
                    if mean[j] > 0
                ],
                "examples": [int(i) for i in near],
            }
        )
    return {"n_clusters": n_clusters, "labels": km.labels_, "clusters": sorted(clusters, key=lambda c: -c["size"])}
