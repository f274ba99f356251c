"""The multimodal commands end to end: train --arch vlsae|multimodal, eval's cross-modal section,
hallucination, steer, compare, and their errors."""

import json

import numpy as np
import pytest

from mmsae.cli.main import main

TRAIN = ["--dict-size", "256", "--k", "8", "--batch-size", "256", "--epochs", "30", "--lr", "3e-3", "--json"]


@pytest.fixture(scope="module")
def trained(small_synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-mm")
    for arch in ("multimodal", "vlsae"):
        assert main(["train", str(small_synth), "--arch", arch, "--out", str(root / arch), *TRAIN]) == 0
    return root


def test_eval_reports_crossmodal_section(small_synth, trained, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained / "multimodal"), str(small_synth), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    cm = res["crossmodal"]
    assert set(cm) >= {"alignment", "code_retrieval", "concept_discovery", "retrieval_retention", "planted"}
    assert 0 <= cm["planted"]["shared_recovery"]["shared_recovery"] <= 1
    assert set(res["by_modality"]) == {"image", "text"}
    assert main(["eval", str(trained / "vlsae"), str(small_synth)]) == 0
    text = capsys.readouterr().out
    assert "alignment score" in text and "zero-shot accuracy" in text and "retrieval retention" in text


def test_eval_independent_pair(small_synth, tmp_path, capsys):
    for m in ("image", "text"):
        assert main(["train", str(small_synth), "--modality", m, "--out", str(tmp_path / m), *TRAIN]) == 0
    capsys.readouterr()
    assert (
        main(["eval", str(tmp_path / "text"), str(small_synth), "--image-sae", str(tmp_path / "image"), "--json"]) == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["by_modality"]["image"]["fvu"] < 0.5 and "crossmodal" in res


def test_hallucination_and_steer_commands(small_synth, trained, tmp_path, capsys):
    capsys.readouterr()
    assert main(["hallucination", str(trained / "multimodal"), str(small_synth), "--n", "1000", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["labelled_set"].startswith("planted") and {"sae", "clip_score", "mitigation"} <= set(res)
    assert res["sae"]["auroc"] > res["clip_score"]["auroc"]

    probe = tmp_path / "probe.npz"
    np.savez(probe, weight=np.ones((1, 64)), bias=np.array([0.5]))
    assert (
        main(
            [
                "steer",
                str(trained / "multimodal"),
                str(small_synth),
                "--concept",
                "3",
                "--strength",
                "0.5",
                "--rows",
                "0,1",
                "--probe",
                str(probe),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert [r["row"] for r in res["results"]] == [0, 1]
    assert res["results"][0]["before"][0]["row"] == 0  # unsteered, a row is its own nearest neighbour
    assert "probe_after" in res["results"][0]
    assert (
        main(
            [
                "steer",
                str(trained / "vlsae"),
                str(small_synth),
                "--concept",
                "3",
                "--strength",
                "2",
                "--target",
                "text",
                "--n",
                "1",
            ]
        )
        == 0
    )
    assert "nearest text rows after" in capsys.readouterr().out


def test_compare_command_small(small_synth, tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                str(small_synth),
                "--out",
                str(tmp_path / "cmp"),
                "--dict-size",
                "128",
                "--epochs",
                "5",
                "--batch-size",
                "256",
                "--models",
                "independent,multimodal",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in res["rows"]] == ["independent", "multimodal"]
    assert (tmp_path / "cmp" / "comparison.md").exists()
    # the header states what each model trained with (given here: batch 256, 5 epochs)
    table = (tmp_path / "cmp" / "comparison.md").read_text().split("| model |")[0]
    ind, mm = res["rows"][0]["schedule"], res["rows"][1]["schedule"][0]
    assert [s["sae"] for s in ind] == ["independent-image", "independent-text"]
    assert mm == {"sae": "multimodal", "batch_size": 256, "epochs": 5.0, "steps": mm["steps"], "auto": False}
    assert (
        mm["steps"] == json.loads((tmp_path / "cmp" / "multimodal" / "config.json").read_text())["provenance"]["steps"]
    )
    assert f"multimodal batch 256, {mm['steps']:,} steps, 5 epochs" in table and "as given" in table
    assert f"independent-image: batch 256, {ind[0]['steps']:,} steps, 5 epochs" in table


@pytest.mark.slow
def test_compare_defaults_scale_with_a_small_store(small_synth, tmp_path, capsys):
    """On 4,000 planted pairs the old fixed default (batch 1024 × 20 epochs: 140 steps) left the
    pooled SAE untrained (shared-concept recovery 0.08 in issue 18); the automatic schedule gives it
    3,000 steps of batch 128 and recovers nearly every shared concept."""
    base = ["compare", str(small_synth), "--dict-size", "256", "--k", "8", "--models", "pooled", "--json"]
    rows = {}
    for name, extra in (("old", ["--batch-size", "1024", "--epochs", "20"]), ("auto", [])):
        capsys.readouterr()
        assert main([*base, "--out", str(tmp_path / name), *extra]) == 0
        rows[name] = json.loads(capsys.readouterr().out)["rows"][0]
    old, auto = rows["old"], rows["auto"]
    assert old["schedule"][0]["steps"] < 200 and auto["schedule"][0]["steps"] >= 3000
    assert auto["schedule"][0]["batch_size"] == 128 and auto["schedule"][0]["auto"]
    assert auto["shared_recovery"] > 0.9 and auto["shared_recovery"] > old["shared_recovery"] + 0.5
    assert auto["fvu_image"] < old["fvu_image"] - 0.05
    md = (tmp_path / "auto" / "comparison.md").read_text()
    assert "batch size and epochs sized to each model's training split" in md
    assert f"pooled batch 128, {auto['schedule'][0]['steps']:,} steps" in md


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "{store}", "--arch", "topk", "--lambda-align", "1", "--out", "{tmp}/x"],
            "applies to --arch multimodal",
        ),
        (["train", "{store}", "--arch", "topk", "--vlsae-center", "--out", "{tmp}/x"], "--vlsae-center applies"),
        (["train", "{store}", "--arch", "multimodal", "--modality", "image", "--out", "{tmp}/x"], "does not apply"),
        (["train", "{store}", "--arch", "vlsae", "--normalize", "center_scale", "--out", "{tmp}/x"], "centring"),
        (["steer", "{sae}", "{store}", "--concept", "999", "--strength", "1"], "--concept must be in"),
        (["steer", "{sae}", "{store}", "--concept", "1", "--strength", "1", "--rows", "4000"], "not --source image"),
        (["steer", "{sae}", "{store}", "--concept", "1", "--strength", "1", "--rows", "x"], "comma-separated"),
        (["steer", "{sae}", "{store}", "--direction", "{tmp}/none.npy", "--strength", "1"], "cannot read"),
        (["hallucination", "{sae}", "{store}", "--beta", "2"], "--beta"),
        (["compare", "{store}", "--out", "{tmp}/c", "--models", "nope"], "unknown model"),
    ],
)
def test_errors_are_one_line(small_synth, trained, tmp_path, capsys, argv, message):
    argv = [a.format(store=small_synth, tmp=tmp_path, sae=trained / "multimodal") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_hallucination_scores_user_pairs(small_synth, trained, tmp_path, capsys):
    from mmsae.data.synthetic import hallucination_set, load_ground_truth, synth_config_of

    img, txt, lab, _ = hallucination_set(synth_config_of(small_synth), load_ground_truth(small_synth), 300, seed=9)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "txt.npy", txt)
    capsys.readouterr()
    assert (
        main(
            [
                "hallucination",
                str(trained / "multimodal"),
                str(small_synth),
                "--n",
                "1000",
                "--score",
                str(tmp_path / "img.npy"),
                str(tmp_path / "txt.npy"),
                "--scores-out",
                str(tmp_path / "s.csv"),
                "--json",
            ]
        )
        == 0
    )
    sc = json.loads(capsys.readouterr().out)["scored"]
    flagged = np.array(sc["flagged"])
    assert sc["n"] == 300 and flagged[lab == 1].mean() > flagged[lab == 0].mean() + 0.15
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 301
    np.save(tmp_path / "short.npy", txt[:5])
    assert (
        main(
            [
                "hallucination",
                str(trained / "multimodal"),
                str(small_synth),
                "--n",
                "200",
                "--score",
                str(tmp_path / "img.npy"),
                str(tmp_path / "short.npy"),
            ]
        )
        == 2
    )
    assert "row i of each must be a pair" in capsys.readouterr().err


def test_commands_on_a_store_without_ground_truth(small_synth, trained, tmp_path, capsys):
    """A user's own paired store (no planted truth): eval's cross-modal section has no planted part,
    and hallucination falls back to captions swapped between held-out pairs."""
    from mmsae.data.store import EmbeddingStore, StoreWriter

    src = EmbeddingStore(small_synth)
    meta = src.metadata(["modality", "pair_id", "text"])
    with StoreWriter(tmp_path / "own", dim=src.dim, model_id="my-model") as w:
        for m in ("image", "text"):
            rows = np.nonzero(meta.column("modality").to_numpy(zero_copy_only=False) == m)[0]
            w.append(
                src.get(rows),
                m,
                pair_id=meta.column("pair_id").to_numpy()[rows],
                text=[meta.column("text")[int(r)].as_py() for r in rows],
            )
    own = str(tmp_path / "own")
    capsys.readouterr()
    assert main(["eval", str(trained / "multimodal"), own, "--json"]) == 0
    cm = json.loads(capsys.readouterr().out)["crossmodal"]
    assert "planted" not in cm and cm["alignment"]["alignment_score"] > 1
    assert main(["hallucination", str(trained / "multimodal"), own, "--n", "400", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["labelled_set"].startswith("captions swapped")
    assert res["sae"]["auroc"] > 0.6 and res["clip_score"]["auroc"] > 0.6  # a mismatched caption is easy
    assert (
        main(
            [
                "compare",
                own,
                "--out",
                str(tmp_path / "c"),
                "--dict-size",
                "64",
                "--epochs",
                "2",
                "--batch-size",
                "256",
                "--models",
                "pooled",
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert "shared_recovery" not in row and 0 < row["fvu_image"] < 1
