"""`mmsae analyze` end to end on a small planted store, and its errors."""

import json

import pytest

from mmsae.cli.main import main


@pytest.fixture(scope="module")
def sae(small_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("an") / "sae"
    assert (
        main(
            [
                "train",
                str(small_synth),
                "--out",
                str(out),
                "--dict-size",
                "128",
                "--k",
                "8",
                "--batch-size",
                "256",
                "--epochs",
                "10",
                "--lr",
                "3e-3",
                "--json",
            ]
        )
        == 0
    )
    return out


def test_modality_and_bridges(small_synth, sae, tmp_path, capsys):
    capsys.readouterr()
    assert main(["analyze", "modality", str(sae), str(small_synth), "--out", str(tmp_path / "m"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sum(res["buckets"].values()) == 128 and "per_concept" not in res
    assert (tmp_path / "m" / "modality.png").exists()
    assert (
        main(
            [
                "analyze",
                "bridges",
                str(sae),
                str(small_synth),
                "--out",
                str(tmp_path / "b"),
                "--top",
                "5",
                "--shuffles",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "# Bridges" in out and "bridges.json" in out
    top = json.loads((tmp_path / "b" / "bridges.json").read_text())["top"]
    assert len(top) == 5 and top[0]["score"] >= top[-1]["score"]
    # names come from the planted ground truth on synthetic stores
    assert any(t["name_image_side"] for t in top)


def test_stability_and_pareto(small_synth, tmp_path, capsys):
    assert (
        main(
            [
                "analyze",
                "stability",
                str(small_synth),
                "--out",
                str(tmp_path / "s"),
                "--mixes",
                "1:1,1:2",
                "--dict-size",
                "64",
                "--k",
                "4",
                "--epochs",
                "3",
                "--batch-size",
                "256",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert len(res["runs"]) == 1 and 0 < res["stability"] <= 1
    assert (
        main(
            [
                "analyze",
                "pareto",
                str(small_synth),
                "--out",
                str(tmp_path / "p"),
                "--levels",
                "2,4",
                "--saes",
                "topk",
                "--baselines",
                "pca,kmeans",
                "--dict-size",
                "64",
                "--epochs",
                "2",
                "--batch-size",
                "256",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert {p["label"] for p in res["points"]} == {"pca-2", "pca-4", "kmeans-16", "kmeans-64", "topk-k2", "topk-k4"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", "pareto", "{store}", "--out", "{tmp}/p", "--levels", "0,2"], "levels must be in"),
        (["analyze", "pareto", "{store}", "--out", "{tmp}/p", "--saes", "lasso"], "unknown method"),
        (["analyze", "pareto", "{store}", "--out", "{tmp}/p", "--levels", "a"], "comma-separated"),
        (["analyze", "stability", "{store}", "--out", "{tmp}/s", "--seeds", "1"], "at least 2"),
        (["analyze", "stability", "{store}", "--out", "{tmp}/s", "--saes", "{sae}"], "at least two"),
        (["analyze", "bridges", "{tmp}/nope", "{store}", "--out", "{tmp}/b"], "no such SAE folder"),
    ],
)
def test_errors(small_synth, sae, tmp_path, capsys, argv, message):
    argv = [a.format(store=small_synth, tmp=tmp_path, sae=sae) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
