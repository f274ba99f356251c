"""Stores too small for a held-out split: every store with a row trains (or is refused in one line
before training), `--val-fraction 0` trains on everything, training metrics say so, and the SAE is
on disk before anything measures it."""

import json

import numpy as np
import pytest

from mmsae.cli.main import main
from mmsae.data.store import StoreWriter
from mmsae.errors import MmsaeError
from mmsae.models import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

SMALL = ["--arch", "topk", "--k", "4", "--dict-size", "64", "--epochs", "2", "--device", "cpu"]


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Image stores of 1 and 7 rows (512-d unit vectors, as `mmsae import X.npy` makes them) and a
    paired store of 3 pairs."""
    root = tmp_path_factory.mktemp("tiny")
    stores = {}
    for n in (1, 7):
        np.save(root / f"x{n}.npy", _unit_rows(n, 512, n))
        assert (
            main(["import", str(root / f"x{n}.npy"), "--modality", "image", "--out", str(root / f"s{n}"), "--json"])
            == 0
        )
        stores[n] = root / f"s{n}"
    np.save(root / "img.npy", _unit_rows(3, 32, 10))
    np.save(root / "txt.npy", _unit_rows(3, 32, 11))
    args = ["import", "--images", str(root / "img.npy"), "--texts", str(root / "txt.npy"), "--out", str(root / "p3")]
    assert main([*args, "--json"]) == 0
    stores["pairs"] = root / "p3"
    return stores


def _train(capsys, store, out, *flags) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["train", str(store), "--out", str(out), *SMALL, *flags])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("val", [None, "0"])
def test_tiny_store_trains_and_labels_training_metrics(tiny, tmp_path, capsys, n, val):
    flags = ["--batch-size", str(min(n, 4))] + (["--val-fraction", val] if val else [])
    rc, out, err = _train(capsys, tiny[n], tmp_path / "sae", *flags)
    assert rc == 0, err
    assert (tmp_path / "sae" / "model.safetensors").exists() and (tmp_path / "sae" / "config.json").exists()
    sae = load_sae(tmp_path / "sae")
    assert sae.provenance["held_out"] is False and sae.provenance["train_config"]["val_fraction"] == 0.0
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert metrics["split"] == "train" and metrics["held_out"] is False
    if val is None:  # the default 0.1 cannot hold out 2 rows here: it says so in one line
        assert "training on all of them instead" in out
    else:
        assert "training on all of them instead" not in out
    if n == 1:  # FVU of one row is undefined: no metrics, and a note instead of a crash
        assert "fvu" not in metrics and "no metrics" in out
    else:
        assert "training (not held-out) FVU" in out and "held-out FVU" not in out.replace("(not held-out) FVU", "")
        assert metrics["fvu"] == pytest.approx(sae.provenance["val_metrics"]["fvu"])


def test_json_result_says_whether_metrics_are_held_out(tiny, tmp_path, capsys):
    rc, out, _ = _train(capsys, tiny[7], tmp_path / "sae", "--batch-size", "4", "--val-fraction", "0", "--json")
    res = json.loads(out)
    assert rc == 0 and res["held_out"] is False and res["val_metrics"]["split"] == "train"
    assert res["val_metrics"]["held_out"] is False and res["val_metrics"]["n_rows"] == 7


def test_a_batch_given_larger_than_a_tiny_store_is_one_line_before_training(tiny, tmp_path, capsys):
    rc, out, err = _train(capsys, tiny[7], tmp_path / "sae", "--batch-size", "4096")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "fewer than one batch" in err and "--batch-size 7" in err
    assert not (tmp_path / "sae").exists()


def test_paired_tiny_store_falls_back_to_training_metrics(tiny, tmp_path, capsys):
    for arch in ("multimodal", "vlsae"):
        capsys.readouterr()
        flags = ["--arch", arch, "--k", "4", "--dict-size", "16", "--epochs", "2", "--batch-size", "1"]
        assert main(["train", str(tiny["pairs"]), "--out", str(tmp_path / arch), *flags]) == 0
        out = capsys.readouterr().out
        assert "of 3 pairs" in out and "training (not held-out) FVU image" in out
        assert json.loads((tmp_path / arch / "metrics.json").read_text())["held_out"] is False


def test_empty_store_and_bad_val_fraction_are_one_line(tiny, tmp_path, capsys):
    with StoreWriter(tmp_path / "empty", dim=8):
        pass
    rc, _, err = _train(capsys, tmp_path / "empty", tmp_path / "sae", "--batch-size", "1")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no rows" in err
    rc, _, err = _train(capsys, tiny[7], tmp_path / "sae", "--val-fraction", "1")
    assert rc == 2 and "val fraction must be in [0, 1)" in err
    rc, _, err = _train(capsys, tiny[7], tmp_path / "sae", "--k", "65")
    assert rc == 2 and "k must be in [1, dict size 64]" in err
    rc, _, err = _train(capsys, tiny[7], tmp_path / "sae", "--modality", "text", "--batch-size", "1")
    assert rc == 2 and "no training rows of modality 'text'" in err
    with pytest.raises(MmsaeError, match="val fraction"):
        TrainConfig(val_fraction=-0.1)
    assert TrainConfig(val_fraction=0.0).val_fraction == 0.0


def test_model_is_saved_before_evaluation(tiny, tmp_path, monkeypatch):
    """A measurement that fails (here: made to) cannot cost the trained SAE."""
    import mmsae.metrics.evaluate

    def broken(*a, **kw):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(mmsae.metrics.evaluate, "evaluate_store", broken)
    cfg = TrainConfig(arch="topk", k=4, dict_size=64, epochs=2, batch_size=4, val_fraction=0.0, device="cpu")
    with pytest.raises(RuntimeError, match="evaluation failed"):
        Trainer(tiny[7], tmp_path / "sae", cfg, progress=False).run()
    sae = load_sae(tmp_path / "sae")  # weights and config are whole
    assert sae.W_dec.shape == (64, 512)
    assert not (tmp_path / "sae" / "checkpoint.pt").exists()


def test_resume_after_fallback_sees_the_same_split(tiny, tmp_path):
    """The fallback is decided from the store alone, so a checkpoint and its resume agree."""
    cfg = TrainConfig(arch="topk", k=4, dict_size=64, epochs=4, batch_size=2, checkpoint_every=3, device="cpu")
    t = Trainer(tiny[7], tmp_path / "sae", cfg, progress=False)
    assert t.cfg.val_fraction == 0.0 and t.notes
    state = t.start()
    batches = t._batches(t.stream_cfg)
    for _ in range(3):
        t.step(state, next(batches))
    t.close(state)
    res = Trainer(tiny[7], tmp_path / "sae", cfg, resume=True, progress=False).run()
    assert res.steps == 14 and res.held_out is False


def test_compare_on_a_store_without_held_out_pairs_is_one_line(tiny, tmp_path, capsys):
    """`compare` is a table of held-out scores: refused before training, not a crash after it."""
    capsys.readouterr()
    rc = main(["compare", str(tiny["pairs"]), "--out", str(tmp_path / "c"), "--dict-size", "8", "--k", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "0 held-out pairs" in err
    assert not (tmp_path / "c").exists()


def test_the_default_batch_fits_a_small_store_and_says_so(tmp_path, capsys):
    """`mmsae train` with its defaults on a store smaller than one default batch trains (with the
    batch and epochs of `auto_schedule`) and prints one note; a batch given is kept (and refused)."""
    import json

    import numpy as np

    from mmsae.cli.main import main

    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["import", str(tmp_path / "x.npy"), "--modality", "image", "--out", str(tmp_path / "s"), "--json"]) == 0
    capsys.readouterr()
    args = ["train", str(tmp_path / "s"), "--out", str(tmp_path / "m"), "--dict-size", "32", "--k", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fewer than one default batch (4096): training with batch 128, 3,000 steps" in out
    saved = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert saved["batch_size"] == 128 and saved["epochs"] > 1000
