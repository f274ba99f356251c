"""`mmsae report`: one self-contained HTML file for a run folder.

It reads what the other commands wrote (SAE folders' `metrics.json`, `compare/comparison.json`,
the analyses' JSON and PNG files, `demo_summary.json`) and the explorer's index for a gallery of
concepts with their top pictures and texts. Plots and pictures are embedded as data URIs and
nothing is fetched, so the file opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import json
import time
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.data.images import IMAGE_SUFFIXES, OutsideRoot, safe_file
from mmsae.fileio import atomic_write
from mmsae.models.registry import SINGLE_ARCHITECTURES

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;max-width:1150px;margin:2em auto;padding:0 1em}
h1{font-size:1.7em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.3em .7em;border-bottom:1px solid #e4e4e4;text-align:left}
th{background:#f0f2f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777}.plots img{max-width:100%;border:1px solid #e4e4e4;margin:.4em 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1em}
.concept{border:1px solid #e4e4e4;border-radius:6px;padding:.6em;background:#fff}
.concept img{width:56px;height:56px;image-rendering:pixelated;margin:2px;border-radius:3px}
.concept ul{margin:.3em 0;padding-left:1.1em;font-size:.9em}pre{background:#f6f6f6;padding:.6em;overflow:auto}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def _table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'n' if i >= numeric_from else ''}'>{_fmt(v)}</td>" for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _data_uri(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sae_metrics(root: Path) -> list[list[Any]]:
    rows = []
    for cfg in sorted(root.glob("**/config.json")):
        if len(cfg.relative_to(root).parts) > 3 or not (cfg.parent / "metrics.json").is_file():
            continue
        m = _json(cfg.parent / "metrics.json") or {}
        c = _json(cfg) or {}
        by = m.get("by_modality", {})
        rows.append(
            [
                str(cfg.parent.relative_to(root)) or ".",
                c.get("architecture", ""),
                c.get("dict_size"),
                m.get("fvu"),
                by.get("image", {}).get("fvu"),
                by.get("text", {}).get("fvu"),
                m.get("l0"),
                m.get("dead_fraction"),
                m.get("cosine"),
            ]
        )
    return rows


SAE_NAMES = SINGLE_ARCHITECTURES


def _text_demo_section(s: dict[str, Any]) -> str:
    n = s["scores"]["naming"]
    rows = [
        [
            "concept names",
            f"share of a named concept's top-10 captions that contain its name ({n['named_live']} live concepts)",
            n["name_in_top_captions"],
        ]
    ]
    if "stability" in s["scores"]:
        rows.append(["stability", "mean matched decoder cosine across seeds", s["scores"]["stability"]["mean"]])
    return (
        f"<p>{s['rows']:,} COCO captions embedded with MiniLM ({s['dim']}-d) from {escape(s['captions'])}.</p>"
        + _table(
            ["arch", "FVU", "L0", "dead", "cosine", "train s"],
            [[r["arch"], r["fvu"], r["l0"], r["dead_fraction"], r["cosine"], r["train_seconds"]] for r in s["results"]],
        )
        + "<h3>Analyses</h3>"
        + _table(["analysis", "what", "score"], rows, 2)
    )


RESULT_COLUMNS = (
    ("FVU", "fvu"),
    ("FVU img", "fvu_image"),
    ("FVU txt", "fvu_text"),
    ("L0", "l0"),
    ("dead", "dead_fraction"),
    ("cosine", "cosine"),
    ("train s", "train_seconds"),
)


def _results_table(results: list[dict[str, Any]], first: tuple[str, ...] = ()) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows) of a demo's per-arch results: `first` columns, then RESULT_COLUMNS."""
    keys = [*first, *(k for _, k in RESULT_COLUMNS)]
    return ["arch", *first, *(h for h, _ in RESULT_COLUMNS)], [[r["arch"], *(r[k] for k in keys)] for r in results]


def _world_demo_section(s: dict[str, Any]) -> str:
    """The scene-world demo: the CLIP's measurements, the SAEs, and every score against the attributes."""
    sc = s["world_scores"]
    parts = [
        f"<p>{s['scenes']:,} scenes of the scene world (docs/world.md) embedded by the world's CLIP "
        f"({s['rows']:,} rows, {s['dim']}-d); every score below is measured on {s['probe_scenes']:,} held-out "
        "scenes against the attributes each picture shows and each caption says.</p>"
    ]
    c = s.get("clip")
    if c:
        parts.append(
            "<h3>The learned model</h3>"
            + _table(
                ["i→t R@1", "t→i R@1", "zero-shot colour", "zero-shot shape", "modality gap", "separability"],
                [
                    [
                        c["image_to_text_r1"],
                        c["text_to_image_r1"],
                        c["zero_shot_colour"],
                        c["zero_shot_shape"],
                        c["gap"],
                        c["separability"],
                    ]
                ],
                0,
            )
        )
    parts.append("<h3>SAEs (held-out pairs)</h3>" + _table(*_results_table(s["results"])))
    probe_rows = [
        [
            m,
            t["summary"]["values"],
            t["summary"]["sae_mean"],
            t["summary"]["pca_mean"],
            t["summary"]["raw_mean"],
            t["summary"]["share_detected"],
            t["summary"].get("linear_mean"),
        ]
        for m, t in sc["probing"].items()
    ]
    parts.append(
        "<h3>Sparse probing</h3><p class='muted'>Per attribute value, the AUROC of the best single SAE latent, "
        "PCA direction and embedding dimension as a detector of the rows holding it; 'linear' is a logistic "
        "regression on the whole embedding: a reference for what the space carries linearly.</p>"
        + _table(["rows", "values", "SAE", "PCA", "raw", "SAE ≥ 0.9", "linear"], probe_rows)
    )
    per_attribute = [
        [m, a, b["values"], b["sae_mean"], b["pca_mean"], b["raw_mean"], b["detected"], b.get("linear_mean")]
        for m, t in sc["probing"].items()
        for a, b in t.get("by_attribute", {}).items()
    ]
    parts.append(_table(["rows", "attribute", "values", "SAE", "PCA", "raw", "SAE ≥ 0.9", "linear"], per_attribute, 2))
    per_value = [
        [t["modality"], v["key"], v["n_positive"], v["sae"], v["latent"], v["pca"], v["raw"], v.get("linear")]
        for t in sc["probing"].values()
        for v in t["values"]
    ]
    parts.append(
        "<details><summary>every value</summary>"
        + _table(["rows", "value", "positives", "SAE", "latent", "PCA", "raw", "linear"], per_value, 2)
        + "</details>"
    )
    n = sc["naming"]
    rows = [
        [
            "naming",
            f"{n['correct']}/{n['latents']} latents detecting a value (AUROC ≥ 0.9) named by its word",
            n["accuracy"],
        ]
    ]
    for kind, r in sc["modality_buckets"].items():
        if "accuracy" in r:
            rows.append(
                [
                    "modality",
                    f"{kind}-only values: {r['latents']} detecting latents, {r[r['expected']]} {r['expected']}-only",
                    r["accuracy"],
                ]
            )
    for name, h in sc["hallucination"].items():
        rows.append(
            [
                f"hallucination ({name})",
                f"F1 on swapped captions; raw cosine F1 {h['clip_score']['f1']:.3f}, AUROC SAE {h['sae']['auroc']:.3f} "
                f"vs {h['clip_score']['auroc']:.3f}",
                h["sae"]["f1"],
            ]
        )
    for a, v in sc["steering"]["by_attribute"].items():
        rows.append([f"steering ({a})", f"nearest captions saying the value: before {v['before']:.3f}", v["after"]])
    parts.append("<h3>Against the attributes</h3>" + _table(["analysis", "what", "score"], rows, 2))
    parts.append(
        "<h3>Findings of Papadimitriou et al. 2025</h3>"
        + _table(
            ["finding", "measured", "holds"],
            [[f["finding"], f["measure"], "yes" if f["holds"] else "no"] for f in sc["findings"]],
            3,
        )
    )
    return "".join(parts)


def _demo_section(s: dict[str, Any]) -> str:
    if s.get("data") == "coco-captions":
        return _text_demo_section(s)
    if s.get("data") == "world":
        return _world_demo_section(s)
    sc = s.get("ground_truth_scores", {})
    parts = [
        f"<p>{s['rows']:,} synthetic rows ({s['dim']}-d, {s['planted_concepts']} planted concepts, "
        f"{s.get('planted_bridges', 0)} planted bridges); every score below is measured against that planted "
        "truth. Recovery = share of planted directions matched by a decoder row with cosine ≥ 0.9.</p>",
        _table(*_results_table(s["results"], ("recovery",))),
    ]
    rows = []
    if "naming" in sc:
        n = sc["naming"]
        rows.append(
            [
                "concept names",
                f"{n['correct']}/{n['recovered']} recovered concepts got their planted name",
                n["accuracy"],
            ]
        )
    if "modality_buckets" in sc:
        b = sc["modality_buckets"]
        rows.append(
            ["modality buckets", "recovered concepts in the bucket of their kind (shared → bimodal)", b["accuracy"]]
        )
    if "bridges" in sc:
        b = sc["bridges"]
        rows.append(
            [
                "bridges",
                f"{b['found']}/{b['planted']} planted bridges among the significant top bridges "
                f"(precision over {b['reported']})",
                b["recall"],
            ]
        )
    if "pareto" in sc:
        r2 = sc["pareto"]["r2"]
        others = ", ".join(f"{m} {v:.3f}" for m, v in sorted(r2.items(), key=lambda t: -t[1]) if m not in SAE_NAMES)
        for m in SAE_NAMES:
            if m in r2:
                rows.append(
                    [
                        "Pareto",
                        f"held-out R² of the {m} SAE at L0 ≤ {sc['pareto']['at_l0']} (baselines: {others})",
                        r2[m],
                    ]
                )
    if "stability" in sc:
        rows.append(
            [
                "stability",
                "mean matched decoder cosine across seeds (planted concepts: "
                f"{sc['stability']['recovered_concepts']:.3f})",
                sc["stability"]["mean"],
            ]
        )
    if rows:
        parts.append("<h3>Analyses against the planted truth</h3>" + _table(["analysis", "what", "score"], rows, 2))
    return "".join(parts)


def _gallery(run: Path, n: int) -> str:
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    data = load_explorer(find_run(run))
    from mmsae.data.images import image_root

    root = image_root(data.store)
    meta = data.rows_meta()
    src, text = meta.column("source"), meta.column("text")
    t = data.table
    live = np.nonzero(t["frequency"] > 0)[0]
    pick = live[np.argsort(-t["energy"][live] * t["frequency"][live], kind="stable")][:n]
    cards = []
    for j in pick:
        imgs = ""
        if root is not None and "image" in data.tops:
            for r in data.tops["image"][1][:6, j]:
                if r < 0:
                    continue
                try:
                    f = safe_file(root, src[int(r)].as_py() or "", IMAGE_SUFFIXES)
                except OutsideRoot:
                    f = None
                if f is not None and f.stat().st_size < 512_000:
                    mime = "image/png" if f.suffix.lower() == ".png" else "image/jpeg"
                    imgs += f"<img src='{_data_uri(f, mime)}' alt='row {int(r)}'>"
        texts = ""
        if "text" in data.tops:
            texts = "".join(
                f"<li>{escape(text[int(r)].as_py() or '')}</li>" for r in data.tops["text"][1][:4, j] if r >= 0
            )
        name = t["name"][j] or "(unnamed)"
        terms = ", ".join(data.terms[j][1:4])
        cards.append(
            f"<div class='concept'><b>#{j} {escape(name)}</b> <span class='muted'>{escape(terms)}</span><br>"
            f"<span class='muted'>frequency {t['frequency'][j]:.2%} · {escape(str(t['bucket'][j]))}"
            f" · μ {_fmt(float(t['modality_score'][j]), 2)}</span><div>{imgs}</div><ul>{texts}</ul></div>"
        )
    return f"<div class='gallery'>{''.join(cards)}</div>"


def write_report(run_dir: str | Path, out: str | Path | None = None, gallery: int = 24) -> Path:
    """Write RUN/report.html (or `out`); returns its path."""
    from mmsae.errors import MmsaeError

    run = Path(run_dir)
    if not run.is_dir():
        raise MmsaeError(f"{run} is not a folder")
    body = [
        f"<h1>mmsae report</h1><p class='muted'>{escape(str(run.resolve()))} · written "
        f"{time.strftime('%Y-%m-%d %H:%M')}</p>"
    ]
    demo = _json(run / "demo_summary.json")
    if demo:
        title = {
            "coco-captions": "Demo: SAEs on COCO captions",
            "world": "Demo: SAEs on the scene world's learned embeddings",
        }.get(demo.get("data"), "Demo: SAEs against the planted truth")
        body.append(f"<h2 id='demo'>{title}</h2>" + _demo_section(demo))
    metrics = _sae_metrics(run)
    if metrics:
        body.append(
            "<h2 id='metrics'>Held-out metrics</h2>"
            + _table(["SAE", "arch", "F", "FVU", "FVU img", "FVU txt", "L0", "dead", "cosine"], metrics, 2)
        )
    comp = _json(run / "compare" / "comparison.json")
    if comp:
        cols = [
            k
            for k in (
                "alignment_score",
                "mean_pair_similarity",
                "fvu_image",
                "fvu_text",
                "i2t_recall@1",
                "t2i_recall@1",
                "shared_recovery",
                "hallucination_f1",
                "hallucination_auroc",
                "clip_score_f1",
            )
            if k in comp["rows"][0]
        ]
        body.append(
            "<h2 id='comparison'>Multimodal comparison</h2>"
            + _table(["model"] + cols, [[r["model"]] + [r[c] for c in cols] for r in comp["rows"]])
        )
    from mmsae.runs import ANALYSES, find_analysis

    heads = []
    for name in ANALYSES:
        path = find_analysis(run, f"{name}.json")
        res = _json(path) if path else None
        if not res or name == "names":
            continue
        if name == "modality":
            heads.append(
                ["modality", f"buckets {res['buckets']}; modality probe accuracy {res['probe']['accuracy']:.3f}"]
            )
        elif name == "bridges":
            top = res.get("top", [])[:5]
            best = "; ".join(
                f"#{b['image_concept']} {b.get('name_image_side') or ''} → #{b['text_concept']} "
                f"{b.get('name_text_side') or ''} ({b['score']:.3g})"
                for b in top
            )
            heads.append(
                [
                    "bridges",
                    f"{res['n_significant']} significant of {len(res.get('top', []))} reported "
                    f"(null threshold {res['null']['threshold']:.3g}); strongest: {best}",
                ]
            )
        elif name == "stability":
            heads.append(
                [
                    "stability",
                    f"mean matched cosine {res['stability']:.3f} (live concepts "
                    f"{res['stability_live']:.3f}); Spearman with frequency "
                    f"{res['spearman_stability_vs_frequency']:.2f}",
                ]
            )
        elif name == "pareto":
            md = path.with_suffix(".md")
            heads.append(["pareto", "see the plot" + (f"<pre>{escape(md.read_text())}</pre>" if md.is_file() else "")])
    if heads:
        body.append(
            "<h2 id='analyses'>Analyses</h2><table>"
            + "".join(f"<tr><th>{escape(a)}</th><td>{b if a == 'pareto' else escape(b)}</td></tr>" for a, b in heads)
            + "</table>"
        )
    plots = [(name, find_analysis(run, f"{name}.png")) for name in ANALYSES]
    plots = [(n, p) for n, p in plots if p is not None]
    if plots:
        body.append(
            "<h2 id='plots'>Plots</h2><div class='plots'>"
            + "".join(f"<h3>{escape(n)}</h3><img alt='{escape(n)}' src='{_data_uri(p)}'>" for n, p in plots)
            + "</div>"
        )
    try:
        body.append(
            "<h2 id='gallery'>Concepts</h2><p class='muted'>The most used concepts (frequency × energy) with "
            "their top pictures and texts; <code>mmsae explore</code> shows all of them.</p>" + _gallery(run, gallery)
        )
    except MmsaeError as exc:
        body.append(f"<h2 id='gallery'>Concepts</h2><p class='muted'>no gallery: {escape(str(exc))}</p>")
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mmsae report</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    path = Path(out) if out else run / "report.html"
    return atomic_write(path, html)
