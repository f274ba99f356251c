"""`mmsae demo` on the scene world (the default) end to end at the small size: every step's output,
the scores against the world's attributes, and the report's world section."""

import json
import re

import numpy as np

from mmsae.cli.main import main
from mmsae.data.store import EmbeddingStore
from mmsae.world import read_world


def _summary(run):
    return json.loads((run / "demo_summary.json").read_text())


def test_world_demo_writes_every_step(world_demo_run):
    s = _summary(world_demo_run)
    assert s["data"] == "world" and {r["arch"] for r in s["results"]} == {"topk", "batchtopk", "matryoshka", "relu"}
    for path in (
        "world/world.json",
        "world/images/000000.png",
        "run.json",
        "report.html",
        "report.md",
        "sae-topk/model.safetensors",
        "analysis/names/names.json",
        "analysis/top/top_examples.parquet",
        "analysis/modality/modality.json",
        "analysis/bridges/bridges.json",
        "analysis/stability/stability.json",
        "analysis/pareto/pareto.png",
        "compare/comparison.json",
        "explorer/stats.npz",
    ):
        assert (world_demo_run / path).is_file(), path
    assert len(s["step_seconds"]) == 11
    # the store is the world embedded by its CLIP: one picture per scene, two captions each
    store = EmbeddingStore(world_demo_run / "store")
    world = read_world(world_demo_run / "world")
    assert len(store.rows("image")) == len(world.scenes) == s["scenes"]
    assert len(store.rows("text")) == len(world.captions) == 2 * s["scenes"]
    assert store.manifest.model_id.startswith("hf:") and store.dim == 128


def test_world_demo_scores_against_the_attributes(world_demo_run):
    sc = _summary(world_demo_run)["world_scores"]
    for modality in ("image", "text"):
        t = sc["probing"][modality]
        assert t["summary"]["values"] >= 20
        rows = t["values"]
        assert all(
            0 <= v[m] <= 1 for v in rows for m in ("sae", "pca", "raw", "linear")
        )  # held out: noise may read < 0.5
        # what the CLIP never learned reads at chance for every method, the whole-embedding regression too
        unlearned = [v for v in rows if v["key"].startswith(("texture=", "style=", "mood="))]
        assert unlearned and all(v["linear"] < 0.7 for v in unlearned)
        keys = {v["key"] for v in rows}
        # image rows never probe text-only values, text rows never image-only ones
        assert not any(k.startswith(("style=", "mood=")) for k in keys) if modality == "image" else True
        assert not any(k.startswith("texture=") for k in keys) if modality == "text" else True
    image = {v["key"]: v for v in sc["probing"]["image"]["values"]}
    assert all(image[f"colour={c}"]["sae"] >= 0.9 for c in ("red", "blue", "green"))  # colour: learned by the CLIP
    n = sc["naming"]
    assert n["latents"] >= 5 and n["accuracy"] >= 0.6  # issue #19 asks 0.7; measured 0.71 (docs/demo.md)
    vd = sc["values_detected"]
    assert vd["carried"] <= vd["values"] - 12  # texture, style and mood are not in the space
    h = sc["hallucination"]
    assert set(h) == {"topk", "pooled", "multimodal"}
    for r in h.values():
        assert 0.2 < r["hallucinated_share"] < 0.6 and r["sae"]["auroc"] > 0.55 and r["clip_score"]["auroc"] > 0.55
        # the CLIP reads colours best, shapes well: swaps of either are caught by raw cosine
        by = r["auroc_by_attribute"]
        assert by["colour"]["clip_score"] > 0.9 and by["colour"]["sae"] > 0.8
        assert by["shape"]["clip_score"] > 0.75
    st = sc["steering"]["by_attribute"]
    assert st["colour"]["after"] > st["colour"]["before"] + 0.2
    findings = sc["findings"]
    assert len(findings) == 5 and all(isinstance(f["holds"], bool) and f["measure"] for f in findings)


def test_world_demo_refuses_a_bad_model_before_touching_anything(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    for model, message in (
        (tmp_path / "missing", "holds no CLIP model"),
        (tmp_path / "model", "vision_config.image_size"),
    ):
        assert main(["demo", "--out", str(tmp_path / "run"), "--world-model", str(model), "--no-serve"]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    # a model inside the run folder would be deleted with the previous demo
    run = tmp_path / "old-demo"
    (run / "mine").mkdir(parents=True)
    (run / ".mmsae-demo").write_text("")
    (run / "mine" / "config.json").write_text("{}")
    assert main(["demo", "--out", str(run), "--world-model", str(run / "mine"), "--no-serve"]) == 2
    assert "inside the run folder" in capsys.readouterr().err and (run / "mine" / "config.json").exists()
    assert main(["demo", "--data", "planted", "--world-model", str(tmp_path / "model"), "--no-serve"]) == 2
    assert "--data world only" in capsys.readouterr().err


def test_world_report_section(world_demo_run, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(world_demo_run), "--out", str(out), "--gallery", "4"]) == 0
    html = out.read_text()
    for heading in ("The learned model", "Sparse probing", "Against the attributes", "Papadimitriou"):
        assert heading in html, heading
    srcs = re.findall(r"""(?:src|href)=['"]([^'"]+)""", html)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert html.count("class='concept'") == 4
    assert np.isfinite(_summary(world_demo_run)["seconds"])
