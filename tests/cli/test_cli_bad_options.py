"""The analysis commands' bad options, as a tester found them: each is one line with exit code 2
(or, where the value is valid but large, a normal run), never a traceback."""

import numpy as np
import pytest

from mmsae.cli.main import main


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A paired store imported from .npy files (no synthetic ground truth), and an SAE on it."""
    root = tmp_path_factory.mktemp("bad-options")
    rng = np.random.default_rng(1)
    img = rng.standard_normal((500, 12)).astype(np.float32)
    np.save(root / "img.npy", img)
    np.save(root / "txt.npy", (img + 0.5 * rng.standard_normal(img.shape)).astype(np.float32))
    (root / "vocab.txt").write_text("cat\ndog\nred\n")
    assert (
        main(
            [
                "import",
                "--images",
                str(root / "img.npy"),
                "--texts",
                str(root / "txt.npy"),
                "--out",
                str(root / "store"),
                "--json",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(root / "store"),
                "--out",
                str(root / "sae"),
                "--dict-size",
                "24",
                "--k",
                "3",
                "--batch-size",
                "100",
                "--steps",
                "10",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    return root


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["cluster", "{sae}", "{store}", "--clusters", "0"], "--clusters"),
        (["cluster", "{sae}", "{store}", "--max-rows", "0"], "--max-rows"),
        (["cluster", "{sae}", "{store}", "--max-rows", "5"], "5 rows for 20 clusters"),
        (["steer", "{sae}", "{store}", "--concept", "0", "--strength", "1", "--top", "-1"], "--top"),
        (["steer", "{sae}", "{store}", "--concept", "0", "--strength", "1", "--gallery", "-1"], "--gallery"),
        (["steer", "{sae}", "{store}", "--concept", "0", "--strength", "nan"], "--strength"),
        (["steer", "{sae}", "{store}", "--concept", "0", "--strength", "1", "--n", "0"], "--n"),
        (["steer", "{sae}", "{store}", "--concept", "99", "--strength", "1"], "concept"),
        (["analyze", "bridges", "{sae}", "{store}", "--out", "{out}", "--top", "-1"], "--top"),
        (["analyze", "modality", "{sae}", "{store}", "--out", "{out}", "--max-rows", "3"], "at least 20 rows"),
        (["hallucination", "{sae}", "{store}", "--n", "1e9"], "--n"),
        (["hallucination", "{sae}", "{store}", "--mitigate-concepts", "-1"], "--mitigate-concepts"),
        (["hallucination", "{sae}", "{store}", "--beta", "2"], "--beta"),
        (["name", "{sae}", "{store}", "--vocab", "{vocab}", "--out", "{out}", "--template", "{} {}"], "exactly one {}"),
        (["eval", "{sae}", "{store}", "--device", "tpu"], "tpu"),
        (["eval", "{sae}", "{store}", "--val-fraction", "1.5"], "--val-fraction"),
    ],
)
def test_bad_option_is_one_line(imported, tmp_path, capsys, argv, needle):
    subs = {
        "{sae}": str(imported / "sae"),
        "{store}": str(imported / "store"),
        "{out}": str(tmp_path / "o"),
        "{vocab}": str(imported / "vocab.txt"),
    }
    rc = main([subs.get(a, a) for a in argv])
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if "error:" in ln]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


def test_huge_but_valid_n_runs(imported, capsys):
    """--n larger than the store: the labelled set is what the store has, not a MemoryError."""
    rc = main(["hallucination", str(imported / "sae"), str(imported / "store"), "--n", "1000000000", "--json"])
    err = capsys.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err and "internal error" not in err, err


def test_steer_prints_rows_without_text(imported, capsys):
    """An imported store has no captions: the printed report says so instead of failing (issue 18, defect 1)."""
    rc = main(
        [
            "steer",
            str(imported / "sae"),
            str(imported / "store"),
            "--concept",
            "1",
            "--strength",
            "1",
            "--source",
            "image",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "(no text)" in out and "nearest image rows after" in out
