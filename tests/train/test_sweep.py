"""Many SAEs in one read of the data: each ends exactly as if trained alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mmsae.errors import MmsaeError
from mmsae.models.io import load_sae
from mmsae.train import TrainConfig, train, train_sweep

BASE = TrainConfig(
    arch="topk",
    dict_size=96,
    k=4,
    batch_size=256,
    steps=30,
    lr=3e-3,
    seed=1,
    device="cpu",
    checkpoint_every=0,
    init_rows=2048,
)


def _weights(path):
    return {k: v.detach().numpy() for k, v in load_sae(path).named_tensors().items()}


def test_sweep_equals_separate_runs(tmp_path, small_synth):
    runs = [
        BASE,
        dataclasses.replace(BASE, k=8),
        dataclasses.replace(BASE, arch="relu", l1_coef=2.0),
        dataclasses.replace(BASE, seed=7, data_seed=1, steps=20),
    ]  # another init, same batches, fewer steps
    results = train_sweep(small_synth, [(tmp_path / f"sweep{i}", c) for i, c in enumerate(runs)], progress=False)
    assert [r.steps for r in results] == [30, 30, 30, 20]
    for i, cfg in enumerate(runs):
        train(small_synth, tmp_path / f"alone{i}", cfg, progress=False)
        a, b = _weights(tmp_path / f"sweep{i}"), _weights(tmp_path / f"alone{i}")
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"run {i}: {name}")
    # runs that differ in seed only, data order fixed: different SAEs from the same batches
    assert not np.allclose(_weights(tmp_path / "sweep0")["W_dec"], _weights(tmp_path / "sweep3")["W_dec"])


def test_sweep_refuses_runs_that_draw_other_batches(tmp_path, small_synth):
    with pytest.raises(MmsaeError, match="batch_size"):
        train_sweep(
            small_synth,
            [(tmp_path / "a", BASE), (tmp_path / "b", dataclasses.replace(BASE, batch_size=128))],
            progress=False,
        )
    with pytest.raises(MmsaeError, match="fix data_seed"):
        train_sweep(
            small_synth, [(tmp_path / "a", BASE), (tmp_path / "b", dataclasses.replace(BASE, seed=2))], progress=False
        )
    with pytest.raises(MmsaeError, match="same folder"):
        train_sweep(
            small_synth, [(tmp_path / "a", BASE), (tmp_path / "a", dataclasses.replace(BASE, k=8))], progress=False
        )


def test_cli_sweep_grid(tmp_path, small_synth):
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "train",
            str(small_synth),
            "--out",
            str(tmp_path / "grid"),
            "--dict-size",
            "64",
            "--batch-size",
            "256",
            "--steps",
            "10",
            "--sweep",
            "k=4,8",
            "--sweep",
            "seed=0,1",
            "--json",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    names = sorted(p.name for p in (tmp_path / "grid").iterdir())
    assert names == ["k-4_seed-0", "k-4_seed-1", "k-8_seed-0", "k-8_seed-1"] and len(out) == 4
    cfg = json.loads((tmp_path / "grid" / "k-8_seed-1" / "train_config.json").read_text())
    assert cfg["k"] == 8 and cfg["seed"] == 1 and cfg["data_seed"] == 0
    bad = subprocess.run(
        [sys.executable, "-m", "mmsae", "train", str(small_synth), "--out", str(tmp_path / "x"), "--sweep", "kk=1,2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown training option 'kk'" in bad.stderr


def test_a_sweep_over_an_option_the_architecture_ignores_is_refused(tmp_path):
    """`--arch relu --sweep k=8,16` would train identical SAEs: refused like `--arch relu --k 8`."""
    from mmsae.train.sweep import sweep_runs

    with pytest.raises(MmsaeError, match="--k does not apply to --arch relu, which sets its sparsity with --l1"):
        sweep_runs(tmp_path, TrainConfig(arch="relu"), ["k=8,16"])
    assert len(sweep_runs(tmp_path, TrainConfig(arch="relu"), ["l1_coef=1,2"])) == 2
