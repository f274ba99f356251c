"""Bridge Score (Papadimitriou et al. 2025, docs/formulas.md §5):

    B = E_pairs[z_imgᵀ z_txt] ⊙ (D Dᵀ),   B_ij = (1/N) Σ_n z_img[n,i] · z_txt[n,j] · cos(d_i, d_j),

i on the image side, j on the text side (not symmetric). A high B_ij marks two concepts that
co-fire across matched pairs and point the same way: a bridge between the modalities, even when
each concept is single-modality. For a paired SAE d_i is concept i's image-decoder direction and
d_j concept j's text-decoder direction; for a single SAE both are its decoder rows.

Codes are sparse, so the co-activation E[z_imgᵀ z_txt] is a sparse matrix product computed in
blocks of image-side concepts; only its non-zeros get a cosine, only the top entries are kept,
and no dense F × F matrix is ever formed. A null model recomputes the top score with the text
side shuffled across pairs; entries above the largest shuffled score are significant.
"""

from __future__ import annotations

import heapq
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mmsae.analysis.results import new_figure, save_figure, write_json, write_markdown
from mmsae.vectors import unit_rows


def bridge_matrix_dense(z_img_NF, z_txt_NF, D_img_FD, D_txt_FD) -> np.ndarray:
    """The formula as written (for tests and tiny inputs): a dense [F, F] matrix."""
    zi, zt = np.asarray(z_img_NF, np.float64), np.asarray(z_txt_NF, np.float64)
    Di = unit_rows(np.asarray(D_img_FD, np.float64))
    Dt = unit_rows(np.asarray(D_txt_FD, np.float64))
    return (zi.T @ zt / len(zi)) * (Di @ Dt.T)


def bridge_top(
    Z_img: sp.csr_matrix,
    Z_txt: sp.csr_matrix,
    D_img_FD,
    D_txt_FD,
    top: int = 100,
    block: int | None = None,
    include_self: bool = False,
) -> dict[str, Any]:
    """The `top` largest B_ij (i ≠ j unless `include_self`), per-concept bridge mass, and B_ii.

    Z_img, Z_txt: [N, F] sparse codes, row n of each a matched pair. Bridge mass: Σ_{j≠i} max(B_ij, 0)
    for concept i as the image side (`mass_out`) and Σ_{i≠j} max(B_ij, 0) as the text side (`mass_in`).
    Memory: one block of image-side concepts at a time: its sparse co-activations and its dense
    [block, F] cosines (`block` defaults to what keeps those cosines near 256 MB).
    """
    N, F = Z_img.shape
    block = block or int(max(64, min(4096, 2**26 // max(F, 1))))
    Di, Dt = unit_rows(np.asarray(D_img_FD, np.float32)), unit_rows(np.asarray(D_txt_FD, np.float32))
    Zi_T = sp.csr_matrix(Z_img.T, dtype=np.float64)  # [F, N], rows = image-side concepts
    Zt = sp.csr_matrix(Z_txt, dtype=np.float64)
    heap: list[tuple[float, int, int]] = []
    mass_out, mass_in, self_F = np.zeros(F), np.zeros(F), np.zeros(F)
    nnz = 0
    for lo in range(0, F, block):
        C = (Zi_T[lo : lo + block] @ Zt).tocoo()  # [block, F] co-activation sums
        nnz += C.nnz
        if C.nnz == 0:
            continue
        S = Di[lo : lo + block] @ Dt.T  # dense cosines of this block: one GEMM, no gathers
        cos = S[C.row, C.col].astype(np.float64)
        del S
        i = C.row.astype(np.int64) + lo
        j = C.col.astype(np.int64)
        B = C.data / N * cos
        diag = i == j
        self_F[i[diag]] = B[diag]
        pos = np.maximum(B, 0.0) * ~diag
        mass_out += np.bincount(i, weights=pos, minlength=F)
        mass_in += np.bincount(j, weights=pos, minlength=F)
        cand = np.ones(len(B), bool) if include_self else ~diag
        idx = np.nonzero(cand)[0]
        if len(idx) > top:
            idx = idx[np.argpartition(-B[idx], top - 1)[:top]]
        for t in idx:
            item = (float(B[t]), int(i[t]), int(j[t]))
            if len(heap) < top:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
    best = sorted(heap, reverse=True)
    return {
        "top": [
            {"image_concept": i, "text_concept": j, "score": s, "cosine": float(Di[i] @ Dt[j])} for s, i, j in best
        ],
        "mass_out": mass_out,
        "mass_in": mass_in,
        "self": self_F,
        "coactivation_nnz": int(nnz),
        "n_pairs": N,
    }


def bridge_entries(Z_img: sp.csr_matrix, Z_txt: sp.csr_matrix, D_img_FD, D_txt_FD, I, J) -> np.ndarray:
    """B_ij for chosen index pairs only (e.g. planted bridges and controls)."""
    I, J = np.asarray(I), np.asarray(J)
    Zi = sp.csc_matrix(Z_img, dtype=np.float64)
    Zt = sp.csc_matrix(Z_txt, dtype=np.float64)
    co = np.array([float(Zi[:, [a]].multiply(Zt[:, [b]]).sum()) for a, b in zip(I, J)])
    Di, Dt = unit_rows(np.asarray(D_img_FD, np.float32)), unit_rows(np.asarray(D_txt_FD, np.float32))
    cos = np.einsum("nd,nd->n", Di[I], Dt[J], dtype=np.float64)
    return co / Z_img.shape[0] * cos


@torch.no_grad()
def pair_codes(
    model,
    store,
    split: str = "all",
    val_fraction: float = 0.1,
    max_pairs: int | None = None,
    seed: int = 0,
    block: int = 4096,
    device="cpu",
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Sparse codes of every (image, caption) pair of a store: (Z_img, Z_txt, image rows, text rows)."""
    from mmsae.data.stream import split_mask
    from mmsae.models.paired import as_paired

    m = as_paired(model)
    img_rows, txt_rows = store.pairs()
    keep = split_mask(store.pair_ids()[txt_rows], txt_rows, split, val_fraction)
    img_rows, txt_rows = img_rows[keep], txt_rows[keep]
    if max_pairs is not None and len(img_rows) > max_pairs:
        sel = np.sort(np.random.default_rng(seed).choice(len(img_rows), max_pairs, replace=False))
        img_rows, txt_rows = img_rows[sel], txt_rows[sel]
    out = []
    for rows, mod in ((img_rows, "image"), (txt_rows, "text")):
        parts = []
        for lo in range(0, len(rows), block):
            x = torch.as_tensor(store.get(rows[lo : lo + block]), device=device)
            parts.append(sp.csr_matrix(m.encode(x, mod).cpu().numpy()))
        out.append(sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, m.cfg.dict_size)))
    return out[0], out[1], img_rows, txt_rows


def null_threshold(
    Z_img, Z_txt, D_img, D_txt, shuffles: int = 5, seed: int = 0, block: int | None = None
) -> dict[str, Any]:
    """Largest off-diagonal B with the captions shuffled across pairs, per shuffle; the max is the threshold."""
    rng = np.random.default_rng(seed)
    tops = []
    for _ in range(shuffles):
        perm = rng.permutation(Z_txt.shape[0])
        res = bridge_top(Z_img, Z_txt[perm], D_img, D_txt, top=1, block=block)
        tops.append(res["top"][0]["score"] if res["top"] else 0.0)
    return {"threshold": float(max(tops)) if tops else 0.0, "shuffled_max": tops}


def analyze_bridges(
    model,
    store,
    out: str | Path | None = None,
    top: int = 50,
    split: str = "all",
    max_pairs: int | None = None,
    shuffles: int = 5,
    names: list[str] | None = None,
    examples: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Top bridges with modality scores, names, significance and example pairs; writes bridges.* into `out`."""
    from mmsae.analysis.modality import buckets, modality_scores
    from mmsae.models.paired import as_paired

    t0 = time.perf_counter()
    m = as_paired(model)
    Zi, Zt, img_rows, txt_rows = pair_codes(model, store, split=split, max_pairs=max_pairs, seed=seed)
    D_img = m.decoder_directions("image").detach().cpu().numpy()
    D_txt = m.decoder_directions("text").detach().cpu().numpy()
    res = bridge_top(Zi, Zt, D_img, D_txt, top=top)
    null = null_threshold(Zi, Zt, D_img, D_txt, shuffles=shuffles, seed=seed)
    mu = modality_scores(np.asarray(Zi.mean(axis=0)).ravel(), np.asarray(Zt.mean(axis=0)).ravel())
    bk = buckets(mu)
    texts = store.metadata(["text"]).column("text").to_pylist()
    Zi_c, Zt_c = Zi.tocsc(), Zt.tocsc()
    rows = []
    for b in res["top"]:
        i, j = b["image_concept"], b["text_concept"]
        prod = Zi_c[:, [i]].multiply(Zt_c[:, [j]]).tocoo()
        best = prod.row[np.argsort(-prod.data)[:examples]]
        rows.append(
            {
                **b,
                "significant": b["score"] > null["threshold"],
                "modality_score_image_side": None if np.isnan(mu[i]) else float(mu[i]),
                "modality_score_text_side": None if np.isnan(mu[j]) else float(mu[j]),
                "bucket_image_side": str(bk[i]),
                "bucket_text_side": str(bk[j]),
                "name_image_side": names[i] if names else None,
                "name_text_side": names[j] if names else None,
                "examples": [
                    {
                        "image_row": int(img_rows[n]),
                        "text_row": int(txt_rows[n]),
                        "image_text": texts[img_rows[n]],
                        "caption": texts[txt_rows[n]],
                    }
                    for n in best
                ],
            }
        )
    result = {
        "n_pairs": res["n_pairs"],
        "dict_size": int(Zi.shape[1]),
        "split": split,
        "null": null,
        "top": rows,
        "n_significant": int(sum(r["significant"] for r in rows)),
        "coactivation_nnz": res["coactivation_nnz"],
        "seconds": time.perf_counter() - t0,
        "mass": [
            {
                "concept": c,
                "mass_out": float(res["mass_out"][c]),
                "mass_in": float(res["mass_in"][c]),
                "self": float(res["self"][c]),
            }
            for c in range(len(mu))
        ],
    }
    if out is not None:
        _write(result, Path(out))
    return result


def _write(res: dict[str, Any], out: Path) -> None:
    write_json(out, "bridges", res)
    fig, ax = new_figure()
    mass = np.array([[m["mass_out"], m["mass_in"]] for m in res["mass"]])
    order = np.argsort(-(mass.sum(1)))
    ax.plot(np.arange(1, len(order) + 1), mass[order, 0], label="as image side (out)")
    ax.plot(np.arange(1, len(order) + 1), mass[order, 1], label="as text side (in)")
    ax.set_xscale("log")
    ax.set_xlabel("concept rank by total bridge mass")
    ax.set_ylabel("bridge mass Σ max(B, 0), i ≠ j")
    ax.set_title(f"{res['n_significant']} of the top {len(res['top'])} bridges above the shuffled null")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out, "bridges")
    lines = [
        "# Bridges",
        "",
        f"{res['n_pairs']} pairs, F = {res['dict_size']}. Null threshold (largest off-diagonal score over "
        f"{len(res['null']['shuffled_max'])} caption shuffles): {res['null']['threshold']:.3g}.",
        "",
        "| image concept | text concept | score | cosine | μ image side | μ text side | significant | example caption |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["top"][:25]:
        ni = f"{r['image_concept']}" + (f" ({r['name_image_side']})" if r["name_image_side"] else "")
        nt = f"{r['text_concept']}" + (f" ({r['name_text_side']})" if r["name_text_side"] else "")
        ex = (r["examples"][0]["caption"] or "")[:60] if r["examples"] else ""
        mi = "–" if r["modality_score_image_side"] is None else f"{r['modality_score_image_side']:.2f}"
        mt = "–" if r["modality_score_text_side"] is None else f"{r['modality_score_text_side']:.2f}"
        lines.append(
            f"| {ni} | {nt} | {r['score']:.3g} | {r['cosine']:.2f} | {mi} | {mt} | "
            f"{'yes' if r['significant'] else 'no'} | {ex} |"
        )
    write_markdown(out, "bridges", "\n".join(lines))
