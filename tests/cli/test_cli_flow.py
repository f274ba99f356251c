"""The documented CLI forms work end to end."""

import json

import numpy as np

from mmsae.cli.eval_cmd import KEYS
from mmsae.cli.main import main


def test_import_paired_then_train_then_eval(tmp_path, rng, capsys):
    img = rng.standard_normal((600, 16)).astype(np.float32)
    txt = (img + 0.1 * rng.standard_normal(img.shape)).astype(np.float32)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "txt.npy", txt)
    (tmp_path / "caps.txt").write_text("\n".join(f"a caption {i}" for i in range(600)))
    store = tmp_path / "store"
    assert (
        main(
            [
                "import",
                "--images",
                str(tmp_path / "img.npy"),
                "--texts",
                str(tmp_path / "txt.npy"),
                "--captions",
                str(tmp_path / "caps.txt"),
                "--out",
                str(store),
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"] == {"image": 600, "text": 600}
    assert (
        main(
            [
                "train",
                str(store),
                "--arch",
                "topk",
                "--dict-size",
                "64",
                "--k",
                "4",
                "--out",
                str(tmp_path / "sae"),
                "--steps",
                "30",
                "--batch-size",
                "128",
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "sae"), str(store), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(KEYS) <= set(res) and set(res["by_modality"]) == {"image", "text"}
    assert res["n_rows"] == 1200 and res["by_modality"]["text"]["n_rows"] == 600
    assert main(["eval", str(tmp_path / "sae"), str(store), "--split", "val", "--json"]) == 0
    val = json.loads(capsys.readouterr().out)
    assert 0 < val["n_rows"] < 1200 and val["n_rows"] % 2 == 0  # both sides of each held-out pair
    assert main(["eval", str(tmp_path / "sae"), str(store)]) == 0
    assert "fvu_per_sample" in capsys.readouterr().out
    assert main(["info", str(store)]) == 0 and '"dim": 16' in capsys.readouterr().out


def test_demo_options(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--data",
                "planted",
                "--size",
                "small",
                "--out",
                str(out),
                "--archs",
                "topk,relu",
                "--no-multimodal",
                "--no-pareto",
                "--no-stability",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    rows = {r["arch"]: r for r in s["results"]}
    assert set(rows) == {"topk", "relu"} and rows["topk"]["recovery"] >= 0.9
    assert not {"stability", "multimodal", "pareto"} & set(s["ground_truth_scores"])
    assert not (out / "compare").exists() and (out / "report.html").exists()
    assert main(["demo", "--data", "planted", "--size", "small", "--out", str(out), "--archs", "sparse"]) == 2
    assert "--archs must name" in capsys.readouterr().err
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    for data in ("planted", "world"):
        capsys.readouterr()
        assert main(["demo", "--data", data, "--size", "small", "--out", str(tmp_path / "precious"), "--no-serve"]) == 2
        assert "is not an mmsae demo folder" in capsys.readouterr().err
        assert (tmp_path / "precious" / "thesis.tex").read_text() == "do not delete"


def test_synth_and_info(tmp_path, capsys):
    store = tmp_path / "syn"
    assert (
        main(
            [
                "synth",
                "--out",
                str(store),
                "--dim",
                "16",
                "--n-pairs",
                "300",
                "--n-shared",
                "8",
                "--n-image",
                "4",
                "--n-text",
                "4",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["rows"] == 600 and s["concepts"] == {"shared": 8, "image": 4, "text": 4}
    assert main(["synth", "--out", str(store)]) == 2  # never overwrites a store
    assert "already holds a store" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(store),
                "--out",
                str(tmp_path / "sae"),
                "--dict-size",
                "32",
                "--k",
                "4",
                "--batch-size",
                "64",
                "--steps",
                "5",
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["info", str(tmp_path / "sae")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "topk" and info["provenance"]["steps"] == 5
