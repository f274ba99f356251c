"""Training never ends "successfully" with a broken SAE, never resumes onto other data, and every
bad option or damaged file is one line with exit code 2."""

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmsae.cli.main import main
from mmsae.data.importers import import_embeddings
from mmsae.errors import MmsaeError
from mmsae.fileio import dumps
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import CHECKPOINT_NAME, Trainer

SMALL = ["--dict-size", "32", "--k", "4", "--batch-size", "128", "--device", "cpu", "--json"]


def _one_line(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def store(tmp_path, rng):
    np.save(tmp_path / "e.npy", rng.standard_normal((2000, 16)).astype(np.float32))
    import_embeddings(tmp_path / "S", embeddings=tmp_path / "e.npy", modality="image", shard_rows=500)
    return tmp_path / "S"


def test_nan_in_a_shard_stops_training_in_one_line(store, tmp_path, capsys):
    arr = np.load(store / "shards" / "shard-000001.npy")
    arr[10] = np.nan
    np.save(store / "shards" / "shard-000001.npy", arr)
    out = tmp_path / "sae"
    _one_line(
        capsys,
        main(["train", str(store), "--out", str(out), "--steps", "20", *SMALL]),
        "NaN/inf",
        f"mmsae info {store} --check",
    )
    assert not (out / "model.safetensors").exists()


def test_nan_batch_names_the_step_and_keeps_the_checkpoint(store, tmp_path):
    cfg = TrainConfig(dict_size=32, k=4, batch_size=128, steps=10, checkpoint_every=2, device="cpu")
    t = Trainer(store, tmp_path / "sae", cfg, progress=False)
    state = t.start()
    good = np.random.default_rng(0).standard_normal((128, 16)).astype(np.float32)
    for _ in range(4):
        t.step(state, (good,))
    bad = good.copy()
    bad[[3, 9], 1] = np.inf
    with pytest.raises(MmsaeError) as err:
        t.step(state, (bad,))
    msg = str(err.value)
    assert "step 5 of 10" in msg and "2 row(s) with NaN/inf" in msg and "checkpoint of step 4 is kept" in msg
    t.close(state)
    saved = torch.load(tmp_path / "sae" / CHECKPOINT_NAME, weights_only=True)
    assert saved["step"] == 4 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_divergence_stops_with_the_cause(store, tmp_path, capsys):
    out = tmp_path / "sae"
    err = _one_line(
        capsys,
        main(
            [
                "train",
                str(store),
                "--out",
                str(out),
                "--steps",
                "50",
                "--lr",
                "1e30",
                "--grad-clip",
                "0",
                "--checkpoint-every",
                "1",
                *SMALL,
            ]
        ),
        "training stopped at step",
    )
    assert "diverged" in err and "--lr" in err
    if (out / CHECKPOINT_NAME).exists():  # whatever was kept holds finite weights
        saved = torch.load(out / CHECKPOINT_NAME, weights_only=True)
        assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert not (out / "model.safetensors").exists()


def test_json_output_is_strict():
    text = dumps(
        {
            "fvu": float("nan"),
            "l0": float("inf"),
            "x": [np.float32(1.5), np.float64("-inf")],
            "t": torch.tensor([1.0, float("nan")]),
        }
    )
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON")) == {
        "fvu": None,
        "l0": None,
        "x": [1.5, None],
        "t": [1.0, None],
    }


def test_resume_after_rows_were_appended_is_refused(store, tmp_path, rng, capsys):
    out = tmp_path / "sae"
    args = ["train", str(store), "--out", str(out), "--steps", "6", "--checkpoint-every", "2", *SMALL]
    cfg = TrainConfig(dict_size=32, k=4, batch_size=128, steps=6, checkpoint_every=2, device="cpu")
    t = Trainer(store, out, cfg, progress=False)
    state = t.start()
    for _b in range(3):
        t.step(state, (rng.standard_normal((128, 16)).astype(np.float32),))
    t.close(state)
    assert (out / CHECKPOINT_NAME).exists()
    np.save(tmp_path / "more.npy", rng.standard_normal((300, 16)).astype(np.float32))
    import_embeddings(store, embeddings=tmp_path / "more.npy", modality="image")
    _one_line(capsys, main([*args, "--resume"]), "the store changed since the checkpoint", "2000 rows", "2300")


@pytest.mark.parametrize("damage", ["truncate", "empty", "keyless", "garbage"])
def test_damaged_checkpoint_is_one_line(store, tmp_path, capsys, damage):
    out = tmp_path / "sae"
    out.mkdir()
    ckpt = out / CHECKPOINT_NAME
    if damage == "keyless":
        torch.save({"step": 3}, ckpt)
    elif damage == "garbage":
        ckpt.write_bytes(os.urandom(300))
    else:
        torch.save({"step": 1, "model": {"w": torch.zeros(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: 0 if damage == "empty" else 200])
    _one_line(
        capsys,
        main(["train", str(store), "--out", str(out), "--steps", "6", "--resume", *SMALL]),
        str(ckpt),
        "--overwrite",
    )


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--epochs", "inf"], "epochs"),
        (["--warmup-frac", "nan"], "warmup"),
        (["--warmup-frac", "5"], "warmup"),
        (["--log-every", "0"], "log every"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**70)], "seed"),
        (["--device", "tpu"], "tpu"),
        (["--arch", "matryoshka", "--matryoshka-ks", "0,4"], "matryoshka ks"),
        (["--grad-clip", "nan"], "grad clip"),
        (["--shuffle-buffer", "0"], "shuffle buffer"),
        (["--dead-after", "-1"], "dead after"),
        (["--aux-coef", "nan"], "aux coefficient"),
        (["--mix", "nan:1"], "--mix"),
        (["--lr", "inf"], "learning rate"),
        (["--k", "x"], "invalid int value"),
    ],
)
def test_bad_training_options_are_one_line(store, tmp_path, capsys, flags, needle):
    rc = main(["train", str(store), "--out", str(tmp_path / "sae"), "--steps", "2", *SMALL, *flags])
    _one_line(capsys, rc, needle)
    assert not (tmp_path / "sae").exists()


@pytest.mark.parametrize(
    "text,suffix,needle",
    [
        ("batch_size = true\n", ".toml", "batch_size must be int"),
        ("weight_decay = -1\n", ".toml", "weight decay"),
        ("lr = 'fast'\n", ".toml", "lr must be float"),
        (b"\xff\xfebatch = 1", ".toml", "not UTF-8"),
        ("[1, 2]", ".json", "expected a table of options"),
        ("{{{", ".yaml", "cannot parse"),
    ],
)
def test_bad_config_files_are_one_line(store, tmp_path, capsys, text, suffix, needle):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _one_line(capsys, main(["train", str(store), "--out", str(tmp_path / "sae"), "--config", str(path)]), needle)


def test_config_that_is_a_folder(store, tmp_path, capsys):
    _one_line(
        capsys, main(["train", str(store), "--out", str(tmp_path / "sae"), "--config", str(tmp_path)]), "is a folder"
    )


def _limited(max_bytes):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return pre


def test_disk_full_while_checkpointing(store, tmp_path):
    out = tmp_path / "sae"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "train",
            str(store),
            "--out",
            str(out),
            "--steps",
            "6",
            "--checkpoint-every",
            "2",
            "--dict-size",
            "4096",
            "--k",
            "4",
            "--batch-size",
            "128",
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        preexec_fn=_limited(400_000),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "File too large" in proc.stderr, proc.stderr
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # no stale temporary file


def test_disk_full_during_import_keeps_the_store(store, tmp_path, rng):
    before = {
        p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name != ".writer.lock"
    }
    np.save(tmp_path / "big.npy", rng.standard_normal((20_000, 16)).astype(np.float32))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "import",
            str(tmp_path / "big.npy"),
            "--modality",
            "text",
            "--out",
            str(store),
            "--shard-rows",
            "5000",
            "--json",
        ],
        capture_output=True,
        text=True,
        preexec_fn=_limited(250_000),
        timeout=300,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    after = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name != ".writer.lock"}
    assert after == before
    # with room again, the same import runs to the end
    assert main(["import", str(tmp_path / "big.npy"), "--modality", "text", "--out", str(store), "--json"]) == 0


def test_a_checkpoint_from_before_new_options_resumes(store, tmp_path):
    """A checkpoint written before a field existed (here l0_coef and wandb) resumes: the missing
    field counts as its default. A logging option may change on resume; a training one may not."""
    cfg = TrainConfig(dict_size=32, k=4, batch_size=128, steps=10, checkpoint_every=4, device="cpu")
    t = Trainer(store, tmp_path / "sae", cfg, progress=False)
    state = t.start()
    rng = np.random.default_rng(0)
    for _ in range(5):
        t.step(state, (rng.standard_normal((128, 16)).astype(np.float32),))
    t.close(state)
    ckpt = tmp_path / "sae" / CHECKPOINT_NAME
    saved = torch.load(ckpt, weights_only=True)
    for field in ("l0_coef", "wandb"):
        del saved["train_config"][field]
    torch.save(saved, ckpt)
    res = Trainer(store, tmp_path / "sae", dataclasses.replace(cfg, log_every=5), resume=True, progress=False).run()
    assert res.steps == 10
    torch.save(saved, ckpt)
    with pytest.raises(MmsaeError, match=r"options differ from the checkpoint's \(lr\)"):
        Trainer(store, tmp_path / "sae", dataclasses.replace(cfg, lr=0.5), resume=True, progress=False)
