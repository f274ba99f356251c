"""Every bad input to `mmsae import` (and friends) gives one line on stderr and exit code 2."""

import subprocess
import sys

import numpy as np
import pytest

from mmsae.cli.main import main
from tests.helpers import one_line_error


@pytest.fixture
def files(tmp_path, rng):
    good = tmp_path / "good.npy"
    np.save(good, rng.standard_normal((20, 8)).astype(np.float32))
    nan = tmp_path / "nan.npy"
    a = rng.standard_normal((20, 8))
    a[[1, 2], 3] = np.nan
    np.save(nan, a)
    rank3 = tmp_path / "rank3.npy"
    np.save(rank3, np.zeros((2, 3, 4)))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 8)))
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes(good.read_bytes()[:200])
    d9 = tmp_path / "d9.npy"
    np.save(d9, rng.standard_normal((5, 9)))
    return dict(good=good, nan=nan, rank3=rank3, empty=empty, trunc=trunc, d9=d9)


def test_nan_rows(files, tmp_path, capsys):
    rc = main(["import", str(files["nan"]), "--modality", "image", "--out", str(tmp_path / "s")])
    one_line_error(capsys, rc, "2 of 20 rows contain NaN or inf", "--drop-invalid")
    assert (
        main(
            [
                "import",
                str(files["nan"]),
                "--modality",
                "image",
                "--out",
                str(tmp_path / "s"),
                "--drop-invalid",
                "--json",
            ]
        )
        == 0
    )


def test_wrong_rank(files, tmp_path, capsys):
    one_line_error(
        capsys, main(["import", str(files["rank3"]), "--modality", "image", "--out", str(tmp_path / "s")]), "2-D [N, D]"
    )


def test_empty(files, tmp_path, capsys):
    one_line_error(
        capsys, main(["import", str(files["empty"]), "--modality", "image", "--out", str(tmp_path / "s")]), "empty"
    )


def test_truncated(files, tmp_path, capsys):
    one_line_error(
        capsys,
        main(["import", str(files["trunc"]), "--modality", "image", "--out", str(tmp_path / "s")]),
        "cannot read",
    )


def test_missing(tmp_path, capsys):
    one_line_error(
        capsys,
        main(["import", str(tmp_path / "x.npy"), "--modality", "image", "--out", str(tmp_path / "s")]),
        "no such file",
    )


def test_dim_mismatch_with_store(files, tmp_path, capsys):
    assert main(["import", str(files["good"]), "--modality", "image", "--out", str(tmp_path / "s"), "--json"]) == 0
    capsys.readouterr()
    one_line_error(
        capsys,
        main(["import", str(files["d9"]), "--modality", "text", "--out", str(tmp_path / "s")]),
        "dimension mismatch",
        "8-d",
        "9-d",
    )


def test_paired_count_mismatch(files, tmp_path, capsys):
    one_line_error(
        capsys,
        main(["import", "--images", str(files["good"]), "--texts", str(files["d9"]), "--out", str(tmp_path / "s")]),
        "dimension mismatch",
    )


def test_missing_modality(files, tmp_path, capsys):
    one_line_error(capsys, main(["import", str(files["good"]), "--out", str(tmp_path / "s")]), "--modality")


def test_bad_train_and_eval_inputs(files, tmp_path, capsys):
    one_line_error(capsys, main(["train", str(tmp_path / "nostore"), "--out", str(tmp_path / "o")]), "does not exist")
    assert main(["import", str(files["good"]), "--modality", "image", "--out", str(tmp_path / "s"), "--json"]) == 0
    capsys.readouterr()
    one_line_error(
        capsys, main(["train", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--arch", "nope"]), "unknown --arch"
    )
    one_line_error(capsys, main(["train", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--k", "0"]), "k must be")
    one_line_error(
        capsys, main(["train", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--arch", "relu", "--k", "4"]), "--l1"
    )
    for arch, flag, says in [
        ("gated", ["--k", "4"], "sets its sparsity with --l1"),
        ("jumprelu", ["--l1", "2"], "sets its sparsity with --l0-coef"),
        ("topk", ["--l0-coef", "2"], "sets its sparsity with --k"),
        ("jumprelu", ["--aux-k", "8"], "--aux-k applies to --arch topk, batchtopk, matryoshka, multimodal only"),
    ]:
        argv = ["train", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--arch", arch, *flag]
        one_line_error(capsys, main(argv), says)
    small = ["train", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--batch-size", "4096"]
    one_line_error(capsys, main(small), "fewer than one batch")  # a batch asked for is never shrunk
    one_line_error(capsys, main(["eval", str(tmp_path / "nosae"), str(tmp_path / "s")]), "no such SAE folder")


def test_subprocess_exit_code_and_no_traceback(files, tmp_path):
    """The real entry point, as a user runs it."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "import",
            str(files["rank3"]),
            "--modality",
            "image",
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stderr.strip().startswith("mmsae import: error:") and len(p.stderr.strip().splitlines()) == 1


def test_eval_on_rows_that_do_not_vary_is_one_line(tmp_path, capsys):
    """FVU divides by the rows' spread: identical rows have none, which `mmsae eval` says in one line
    (it was an internal error, ZeroDivisionError)."""
    import numpy as np

    rows = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", rows)
    np.save(tmp_path / "same.npy", np.repeat(rows[:1], 20, axis=0))
    assert main(["import", str(tmp_path / "x.npy"), "--modality", "image", "--out", str(tmp_path / "s"), "--json"]) == 0
    assert (
        main(["import", str(tmp_path / "same.npy"), "--modality", "image", "--out", str(tmp_path / "t"), "--json"]) == 0
    )
    train = ["train", str(tmp_path / "s"), "--out", str(tmp_path / "m"), "--dict-size", "16", "--k", "2"]
    assert main([*train, "--batch-size", "32", "--epochs", "1", "--json"]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["eval", str(tmp_path / "m"), str(tmp_path / "t"), "--json"]), "do not vary")


def test_a_torch_allocation_failure_is_one_line_not_a_bug(tmp_path, capsys, monkeypatch):
    """PyTorch's allocators raise RuntimeError, not MemoryError: still the machine's answer."""
    from mmsae.cli import main as cli_main

    def too_big(args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 1966080000 bytes"
        )

    parser = cli_main.build_parser()
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=too_big)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    one_line_error(capsys, main(["info", str(tmp_path)]), "out of memory")
