"""Training end to end: ground-truth recovery, exact resume after a real kill, options and errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mmsae.cli.main import main
from mmsae.data.synthetic import load_ground_truth, recovery
from mmsae.models import build_sae, load_sae

TRAIN_ARGS = [
    "--dict-size",
    "256",
    "--k",
    "8",
    "--batch-size",
    "256",
    "--epochs",
    "30",
    "--lr",
    "3e-3",
    "--device",
    "cpu",
    "--json",
]


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
def test_recovers_planted_concepts(small_synth, tmp_path, arch, capsys):
    """`mmsae train` recovers ≥ 90% of 96 planted directions (4,000 pairs, D=64); a random SAE < 5%."""
    out = tmp_path / arch
    assert main(["train", str(small_synth), "--arch", arch, "--out", str(out), *TRAIN_ARGS]) == 0
    res = json.loads(capsys.readouterr().out)
    gt = load_ground_truth(small_synth)
    sae = load_sae(out)
    share, _ = recovery(sae.W_dec.detach().numpy(), gt.dictionary_CD)
    assert share >= 0.9, share
    assert res["val_metrics"]["fvu"] < 0.1 and res["val_metrics"]["split"] == "val"
    torch.manual_seed(0)
    random_sae = build_sae(arch, d_in=64, dict_size=256, k=8)
    random_share, _ = recovery(random_sae.W_dec.detach().numpy(), gt.dictionary_CD)
    assert random_share < 0.05
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "fvu", "l0", "dead_fraction", "lr"} <= set(log[-1])
    assert log[-1]["fvu"] < log[0]["fvu"]


@pytest.mark.parametrize("arch, sparsity", [("gated", ["--l1", "4"]), ("jumprelu", ["--l0-coef", "1"])])
def test_penalty_architectures_recover_planted_concepts(small_synth, tmp_path, arch, sparsity, capsys):
    """Gated and JumpReLU, whose sparsity comes from a penalty weight instead of k, recover ≥ 90% of
    the 96 planted directions at a sparsity near the data's own."""
    out = tmp_path / arch
    args = [a for a in TRAIN_ARGS if a not in ("--k", "8")]
    assert main(["train", str(small_synth), "--arch", arch, "--out", str(out), *args, *sparsity]) == 0
    res = json.loads(capsys.readouterr().out)
    share, _ = recovery(load_sae(out).W_dec.detach().numpy(), load_ground_truth(small_synth).dictionary_CD)
    assert share >= 0.9, share
    assert res["val_metrics"]["fvu"] < 0.1 and res["val_metrics"]["l0"] < 16


def test_relu_trains_sparse(small_synth, tmp_path, capsys):
    out = tmp_path / "relu"
    assert (
        main(
            [
                "train",
                str(small_synth),
                "--arch",
                "relu",
                "--l1",
                "1.0",
                "--out",
                str(out),
                "--dict-size",
                "256",
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
    val = json.loads(capsys.readouterr().out)["val_metrics"]
    assert val["fvu"] < 0.2 and val["l0"] < 64  # far sparser than dense (256)


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "mmsae", *args], env


def test_resume_after_kill_gives_identical_weights(small_synth, tmp_path):
    common = [
        "--dict-size",
        "128",
        "--k",
        "8",
        "--batch-size",
        "64",
        "--steps",
        "3000",
        "--checkpoint-every",
        "50",
        "--lr",
        "1e-3",
        "--seed",
        "7",
        "--device",
        "cpu",
        "--json",
    ]
    cmd, env = _cli("train", str(small_synth), "--out", str(tmp_path / "full"), *common)
    subprocess.run(cmd, env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    cmd, env = _cli("train", str(small_synth), "--out", str(killed), *common)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # let it run past the checkpoint, so the kill loses work after it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (killed / "config.json").exists()
    step = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 3000

    cmd, env = _cli("train", str(small_synth), "--out", str(killed), "--resume", *common)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    a, b = load_sae(tmp_path / "full"), load_sae(killed)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-6)
    assert not (killed / "checkpoint.pt").exists()


def test_config_file_and_flag_override(small_synth, tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    cfg.write_text('[train]\narch = "batchtopk"\ndict_size = 64\nk = 4\nsteps = 20\nbatch_size = 128\nlr = 0.002\n')
    out = tmp_path / "sae"
    assert main(["train", str(small_synth), "--config", str(cfg), "--k", "6", "--out", str(out), "--json"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["architecture"] == "batchtopk" and saved["dict_size"] == 64 and saved["k"] == 6
    assert saved["provenance"]["train_config"]["lr"] == 0.002 and saved["provenance"]["steps"] == 20
    assert json.loads((out / "train_config.json").read_text())["k"] == 6


def test_refuses_to_overwrite_and_bad_resume(small_synth, tmp_path, capsys):
    out = tmp_path / "sae"
    args = [
        "train",
        str(small_synth),
        "--out",
        str(out),
        "--dict-size",
        "32",
        "--k",
        "4",
        "--steps",
        "5",
        "--batch-size",
        "64",
        "--json",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a trained SAE" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_trained_sae_works_on_raw_embeddings(small_synth, tmp_path, capsys):
    """Saved weights already include the normalisation: plain numpy on raw rows reproduces eval's FVU."""
    from safetensors.numpy import load_file

    from mmsae.data.store import EmbeddingStore

    out = tmp_path / "sae"
    assert main(["train", str(small_synth), "--out", str(out), *TRAIN_ARGS[:-3], "--epochs", "3", "--json"]) == 0
    capsys.readouterr()
    t = load_file(str(out / "model.safetensors"))
    x = EmbeddingStore(small_synth).all_embeddings()
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    kth = np.sort(pre, axis=1)[:, -8][:, None]
    z = np.where(pre >= kth, np.maximum(pre, 0), 0)
    xh = z @ t["W_dec"] + t["b_dec"]
    fvu_np = ((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert main(["eval", str(out), str(small_synth), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fvu"] == pytest.approx(fvu_np, rel=1e-3)
    np.testing.assert_allclose(np.linalg.norm(t["W_dec"], axis=1), 1, atol=1e-5)


def test_resume_with_other_options_is_refused(small_synth, tmp_path, capsys):
    out = tmp_path / "sae"
    base = [
        "train",
        str(small_synth),
        "--out",
        str(out),
        "--dict-size",
        "32",
        "--k",
        "4",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "5",
        "--steps",
        "12",
        "--json",
    ]
    from mmsae.train.config import TrainConfig
    from mmsae.train.trainer import Trainer

    # leave a checkpoint behind, as a killed run would
    t = Trainer(small_synth, out, TrainConfig(dict_size=32, k=4, batch_size=64, checkpoint_every=5, steps=12))
    sae, stats = t._init_state()
    opt, sched = t._optimizer(sae)
    t.out.mkdir(parents=True, exist_ok=True)
    t._checkpoint(sae, opt, sched, 5, stats, torch.zeros(32, dtype=torch.long))
    assert main([*base[:-3], "--steps", "13", "--resume", "--json"]) == 2
    assert "options differ" in capsys.readouterr().err
    assert main([*base, "--resume"]) == 0


def test_batchtopk_evaluates_at_its_training_sparsity_after_a_short_run(small_synth, tmp_path):
    """BatchTopK's inference threshold comes from the final weights (`calibrate_`), so one short
    pass evaluates at L0 ≈ k and the training FVU, not at the lagging running average's L0 (7 of
    k = 16 on 20,000 pairs before the fix)."""
    import json

    from mmsae.cli.main import main

    out = tmp_path / "btk"
    args = ["train", str(small_synth), "--out", str(out), "--arch", "batchtopk", "--dict-size", "256", "--k", "8"]
    assert main([*args, "--epochs", "1", "--batch-size", "256", "--json"]) == 0
    val = json.loads((out / "metrics.json").read_text())
    last = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()][-1]
    assert abs(val["l0"] - 8) <= 0.1 * 8, val["l0"]
    assert abs(val["fvu"] - last["fvu"]) <= 0.1 * last["fvu"], (val["fvu"], last["fvu"])


def test_batchtopk_threshold_is_the_mean_smallest_kept_activation():
    """`calibrate_` against a direct transcription of Bussmann et al.'s estimator on tiny batches."""
    import torch

    from mmsae.models.base import ALL
    from mmsae.models.batchtopk import BatchTopKConfig, BatchTopKSAE

    torch.manual_seed(0)
    sae = BatchTopKSAE(BatchTopKConfig(d_in=6, dict_size=10, k=2, aux_k=2))
    batches = [torch.randn(5, 6) for _ in range(3)]
    sae.calibrate_({ALL: x} for x in batches)
    want = []
    with torch.no_grad():
        for x in batches:
            z = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc).flatten()
            kept = torch.sort(z, descending=True).values[: 5 * 2]
            want.append(kept[kept > 0].min())
    assert torch.allclose(sae.threshold, torch.full((10,), float(torch.stack(want).mean())), atol=1e-6)
