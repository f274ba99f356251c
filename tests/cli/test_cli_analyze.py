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


def _provenance(folder) -> dict:
    return json.loads((folder / "config.json").read_text())["provenance"]


def test_stability_mixes_get_their_own_seeds_and_a_seed_baseline(small_synth, tmp_path, capsys):
    """Issue 18: every mix was trained with seed 0, so mix-vs-mix was compared with seed-vs-seed
    under other conditions. Now mix i gets seed SEED + i, and runs at the first mix with further
    seeds give the seed-only baseline, printed and in the JSON beside the mixes."""
    capsys.readouterr()
    argv = ["analyze", "stability", str(small_synth), "--out", str(tmp_path / "s"), "--mixes", "1:1,1:2,2:1"]
    small = ["--dict-size", "32", "--k", "4", "--epochs", "1", "--batch-size", "256", "--seed", "3"]
    assert main([*argv, *small]) == 0
    printed = capsys.readouterr().out
    res = json.loads((tmp_path / "s" / "stability.json").read_text())
    saes = tmp_path / "s" / "saes"
    mixes = ["mix1-1-seed3", "mix1-2-seed4", "mix2-1-seed5"]
    baseline = ["mix1-1-seed6", "mix1-1-seed7"]
    assert sorted(p.name for p in saes.iterdir()) == sorted(mixes + baseline)
    seeds = [_provenance(saes / name)["seed"] for name in mixes + baseline]
    assert seeds == [3, 4, 5, 6, 7]  # each run its own seed, recorded in the SAE folder
    assert [_provenance(saes / n)["train_config"]["mix"] for n in mixes + baseline] == [
        "1:1",
        "1:2",
        "2:1",
        "1:1",
        "1:1",
    ]
    assert [r["seed"] for r in res["runs"]] == [4, 5]
    base = res["seed_baseline"]
    assert [r["seed"] for r in base["runs"]] == [6, 7] and 0 < base["stability"] <= 1
    assert [t["seed"] for t in res["trained"]] == seeds
    assert "Seed-only baseline" in printed and f"{base['stability']:.4f}" in printed
    assert "| seed baseline | 6 |" in printed
    steps = _provenance(saes / mixes[0])["steps"]
    assert f"batch 256, {steps:,} steps, 1 epochs" in printed  # the header says how each run trained


def test_stability_seeds_start_at_seed_and_auto_schedule(small_synth, tmp_path, capsys):
    capsys.readouterr()
    argv = ["analyze", "stability", str(small_synth), "--out", str(tmp_path / "s"), "--seeds", "2", "--seed", "5"]
    assert main([*argv, "--dict-size", "32", "--k", "4", "--epochs", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [t["seed"] for t in res["trained"]] == [5, 6] and res["runs"][0]["seed"] == 6
    assert "seed_baseline" not in res
    # the batch size was left to the rule: the same for both runs, from their training rows
    assert {t["batch_size"] for t in res["trained"]} == {128}


def test_pareto_header_states_the_sae_schedule(small_synth, tmp_path, capsys):
    capsys.readouterr()
    argv = ["analyze", "pareto", str(small_synth), "--out", str(tmp_path / "p"), "--levels", "2"]
    assert main([*argv, "--saes", "topk", "--baselines", "pca", "--dict-size", "32", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    sae = next(p for p in json.loads((tmp_path / "p" / "pareto.json").read_text())["points"] if p["method"] == "topk")
    assert sae["batch_size"] == 128 and sae["epochs"] == 1.0  # batch auto, epochs given
    assert sae["steps"] == _provenance(tmp_path / "p" / "saes" / "topk-k2")["steps"]
    assert (
        f"SAE training (batch size sized to the training rows): batch 128, {sae['steps']:,} steps, 1 epochs" in printed
    )


def _write_names(path, concepts) -> None:
    rows = [{"concept": c, "name": n, "terms": [n], "scores": [1.0], "confidence": 0.5} for c, n in concepts]
    path.write_text(json.dumps({"method": "test", "concepts": rows}))


def test_bridges_shows_names_from_names_json(small_synth, sae, tmp_path, capsys):
    _write_names(tmp_path / "names.json", [(c, f"word{c}x") for c in range(128)])
    capsys.readouterr()
    argv = ["analyze", "bridges", str(sae), str(small_synth), "--out", str(tmp_path / "b"), "--top", "3"]
    assert main([*argv, "--shuffles", "1", "--names", str(tmp_path / "names.json")]) == 0
    printed = capsys.readouterr().out
    top = json.loads((tmp_path / "b" / "bridges.json").read_text())["top"]
    assert len(top) == 3
    for t in top:
        i, j = t["image_concept"], t["text_concept"]
        assert (t["name_image_side"], t["name_text_side"]) == (f"word{i}x", f"word{j}x")
        assert f"| {i} (word{i}x) | {j} (word{j}x) |" in printed


def test_bridges_names_errors_are_one_line(small_synth, sae, tmp_path, capsys):
    argv = ["analyze", "bridges", str(sae), str(small_synth), "--out", str(tmp_path / "b"), "--shuffles", "1"]
    _write_names(tmp_path / "big.json", [(500, "far")])
    (tmp_path / "junk.json").write_text('{"concepts": [{"concept": 1}]}')
    for path, needle in (
        (tmp_path / "big.json", "not the SAE's 128"),
        (tmp_path / "junk.json", "not a names.json"),
        (tmp_path / "missing.json", "not a names.json"),
    ):
        capsys.readouterr()
        assert main([*argv, "--names", str(path)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_pareto_sweeps_each_architecture_over_its_own_sparsity_field(small_synth, tmp_path, capsys):
    """Gated sweeps its L1 weight and JumpReLU its L0 weight (`TrainingHooks.sparsity_field`); a
    larger weight gives a sparser SAE."""
    argv = ["analyze", "pareto", str(small_synth), "--out", str(tmp_path / "p"), "--saes", "gated,jumprelu"]
    argv += ["--baselines", "pca", "--levels", "2", "--l1", "0.3,10", "--l0-coefs", "0.1,10"]
    assert main([*argv, "--dict-size", "64", "--epochs", "4", "--batch-size", "256", "--json"]) == 0
    points = {p["label"]: p for p in json.loads(capsys.readouterr().out)["points"]}
    assert set(points) == {"pca-2", "gated-l10.3", "gated-l110", "jumprelu-l00.1", "jumprelu-l010"}
    assert points["gated-l110"]["l0"] < points["gated-l10.3"]["l0"]
    assert points["jumprelu-l010"]["l0"] < points["jumprelu-l00.1"]["l0"]
