"""Data-parallel training: `torchrun --nproc_per_node 2 -m mmsae train` on CPU (gloo) ends with
the same SAE as one process with the same global batch, to float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmsae.models.io import load_sae


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_two_processes_equal_one(tmp_path, small_synth, arch):
    sparsity = ["--k", "8"] if arch == "topk" else ["--l1", "2.0"]
    common = [
        "train",
        str(small_synth),
        "--arch",
        arch,
        "--dict-size",
        "128",
        *sparsity,
        "--batch-size",
        "256",
        "--steps",
        "40",
        "--lr",
        "3e-3",
        "--seed",
        "4",
        "--device",
        "cpu",
        "--json",
        "--checkpoint-every",
        "15",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    one = subprocess.run(
        [sys.executable, "-m", "mmsae", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "mmsae",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_sae(tmp_path / "one"), load_sae(tmp_path / "two")
    for name, t in a.named_tensors().items():
        got, want = b.named_tensors()[name].detach().numpy(), t.detach().numpy()
        if arch == "relu" and got.ndim == 2:
            # A ReLU latent whose pre-activation sits within rounding of 0 can fire in one run and
            # not the other (the two sum a batch's gradient in different orders; seen on Intel's MKL
            # for one latent of 128): then that latent's weights drift apart a little. Every other
            # latent must match to 2e-5, and no latent may drift far.
            axis = 0 if got.shape[0] == a.cfg.dict_size else 1
            off_F = (np.abs(got - want) > 2e-5).any(axis=1 - axis)
            assert off_F.sum() <= 1, f"{name}: {off_F.sum()} latents differ"
            np.testing.assert_allclose(got, want, atol=1e-3, err_msg=name)
            continue
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=name)
    assert b.provenance["world_size"] == 2 and a.provenance["world_size"] == 1
    log_a = [json.loads(line) for line in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b]  # rank 0 alone logged
    # the weights moved: the equality is not that of two untrained models
    assert a.provenance["val_metrics"]["fvu"] < 0.9
    assert abs(a.provenance["val_metrics"]["fvu"] - b.provenance["val_metrics"]["fvu"]) < 1e-4
