"""`mmsae name | top | search | cluster` on a small planted store, and their errors."""

import json

import pyarrow.parquet as pq
import pytest

from mmsae.cli.main import main


@pytest.fixture(scope="module")
def sae(small_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("interp-cli") / "sae"
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
                "20",
                "--lr",
                "3e-3",
                "--json",
            ]
        )
        == 0
    )
    return out


def test_name_top_search_cluster(small_synth, sae, tmp_path, capsys):
    vocab = small_synth / "ground_truth" / "vocab.txt"
    capsys.readouterr()
    assert main(["name", str(sae), str(small_synth), "--vocab", str(vocab), "--out", str(tmp_path / "n")]) == 0
    assert "most confident" in capsys.readouterr().out
    names = json.loads((tmp_path / "n" / "names.json").read_text())
    assert len(names["concepts"]) == 128 and pq.read_table(tmp_path / "n" / "names.parquet").num_rows == 128
    named = [c["name"] for c in names["concepts"] if c["name"]]
    assert sum(not n.startswith("distractor") for n in named) > 0.8 * len(named)

    assert main(["top", str(sae), str(small_synth), "--out", str(tmp_path / "t"), "-k", "5", "--json"]) == 0
    t = pq.read_table(tmp_path / "t" / "top_examples.parquet")
    assert set(t.column("modality").to_pylist()) == {"image", "text"} and max(t.column("rank").to_pylist()) == 4
    capsys.readouterr()

    best = next(c for c in names["concepts"] if c["name"] and c["name"].startswith("shared"))
    assert (
        main(
            [
                "search",
                str(sae),
                str(small_synth),
                "--query",
                best["name"],
                "--names",
                str(tmp_path / "n" / "names.json"),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["target"] == "image" and res["rows"] and "by_name" in res
    assert best["concept"] in [c["concept"] for c in res["by_name"]]
    assert main(["search", str(sae), str(small_synth), "--row", "0", "--splice", str(vocab)]) == 0
    out = capsys.readouterr().out
    assert "top concepts" in out and "SpLiCE" in out and "most similar rows" in out
    assert main(["cluster", str(sae), str(small_synth), "--clusters", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["clusters"]) == 5 and res["clusters"][0]["examples"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["name", "{sae}", "{store}", "--vocab", "{tmp}/none.txt", "--out", "{tmp}/n"], "no such vocabulary"),
        (["name", "{sae}", "{store}", "--vocab", "{vocab}", "--out", "{tmp}/n", "--template", "photo"], "has no {}"),
        (["search", "{sae}", "{store}", "--row", "99999999"], "--row must be in"),
        (["search", "{sae}", "{store}", "--query", " "], "empty"),
        (["cluster", "{sae}", "{store}", "--clusters", "100000"], "fewer --clusters"),
        (["top", "{sae}", "{store}", "--out", "{tmp}/t", "-k", "0"], "at least 1"),
    ],
)
def test_errors(small_synth, sae, tmp_path, capsys, argv, message):
    vocab = small_synth / "ground_truth" / "vocab.txt"
    argv = [a.format(store=small_synth, tmp=tmp_path, sae=sae, vocab=vocab) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
