"""`mmsae demo --no-serve` end to end at the small size: every step's output, scored against the
planted truth, and the report's sections."""

import json
import re

from mmsae.cli.main import main


def test_demo_scores_against_planted_truth(demo_run):
    s = json.loads((demo_run / "demo_summary.json").read_text())
    sc = s["ground_truth_scores"]
    assert set(sc["recovery"]) == {"topk", "batchtopk", "matryoshka", "relu"} and sc["recovery"]["topk"] >= 0.9
    assert sc["naming"]["accuracy"] >= 0.9 and sc["naming"]["recovered"] >= 0.9 * s["planted_concepts"]
    assert sc["modality_buckets"]["accuracy"] >= 0.9
    assert sc["bridges"]["found"] >= sc["bridges"]["planted"] - 1
    assert sc["stability"]["recovered_concepts"] > sc["stability"]["mean"]  # planted concepts survive retrains
    mm = sc["multimodal"]
    assert set(mm) == {"pooled", "multimodal"} and mm["pooled"]["hallucination_f1"] > mm["pooled"]["clip_score_f1"]
    for path in (
        "run.json",
        "report.html",
        "report.md",
        "sae-topk/model.safetensors",
        "analysis/names/names.json",
        "analysis/top/top_examples.parquet",
        "analysis/modality/modality.png",
        "analysis/bridges/bridges.json",
        "analysis/stability/stability.json",
        "analysis/pareto/pareto.png",
        "compare/comparison.json",
        "explorer/stats.npz",
    ):
        assert (demo_run / path).is_file(), path
    assert len(s["step_seconds"]) == 9
    r2 = sc["pareto"]["r2"]
    assert r2["topk"] > max(r2["pca"], r2["nmf"], r2["kmeans"])  # sparse planted data: the SAE wins at equal L0


def test_report_is_self_contained_with_every_section(demo_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(demo_run), "--out", str(out), "--gallery", "6"]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text()
    for section in ("demo", "metrics", "comparison", "analyses", "plots", "gallery"):
        assert f"id='{section}'" in html, section
    assert "Analyses against the planted truth" in html and "multimodal" in html
    srcs = re.findall(r"""(?:src|href)=['"]([^'"]+)""", html)
    assert srcs and all(s.startswith("data:") for s in srcs)  # nothing fetched: opens offline
    assert html.count("data:image/png;base64,") >= 3 + 6  # three plots and the gallery's pictures
    assert html.count("class='concept'") == 6
    assert main(["report", str(tmp_path / "missing")]) == 2
