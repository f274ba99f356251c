"""TensorBoard / W&B logging: the same scalars as train_log.jsonl, one W&B run per SAE folder."""

import json
import os
import sys
import types

import pytest

from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

SMALL = dict(dict_size=32, k=4, batch_size=256, steps=12, log_every=4, checkpoint_every=6, device="cpu")


class _FakeRun:
    def __init__(self, calls, **kwargs):
        self.calls = calls
        calls.append(("init", kwargs))

    def log(self, scalars, step):
        self.calls.append(("log", step, scalars))

    def finish(self):
        self.calls.append(("finish",))


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []
    module = types.SimpleNamespace(init=lambda **kw: _FakeRun(calls, **kw))
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_gets_what_the_jsonl_log_gets(small_synth, tmp_path, fake_wandb):
    out = tmp_path / "sae"
    Trainer(small_synth, out, TrainConfig(**SMALL, wandb="proj"), progress=False).run()
    init = [c for c in fake_wandb if c[0] == "init"]
    assert len(init) == 1 and init[0][1]["project"] == "proj" and init[0][1]["config"]["wandb"] == "proj"
    logged = [(c[1], c[2]) for c in fake_wandb if c[0] == "log"]
    jsonl = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [step for step, _ in logged] == [r["step"] for r in jsonl]
    for (_, scalars), rec in zip(logged, jsonl):
        assert scalars == {f"train/{k}": v for k, v in rec.items() if k != "step"}
    assert fake_wandb[-1] == ("finish",)


def test_a_resumed_run_continues_the_same_wandb_run(small_synth, tmp_path, fake_wandb):
    out = tmp_path / "sae"
    cfg = TrainConfig(**SMALL, wandb="proj")
    t = Trainer(small_synth, out, cfg, progress=False)
    state = t.start()
    batches = t._batches(t.stream_cfg)
    for _ in range(7):  # past the checkpoint at step 6
        t.step(state, next(batches))
    t.close(state)
    Trainer(small_synth, out, cfg, resume=True, progress=False).run()
    ids = [c[1]["id"] for c in fake_wandb if c[0] == "init"]
    assert len(ids) == 2 and ids[0] == ids[1] and all(c[1]["resume"] == "allow" for c in fake_wandb if c[0] == "init")


def test_real_wandb_offline_writes_a_run_beside_the_sae(small_synth, tmp_path, monkeypatch):
    if os.environ.get("CI"):
        import wandb  # noqa: F401  (CI installs the dev extra, which has it: a missing one must fail)
    else:
        pytest.importorskip("wandb", reason="needs the wandb extra (part of dev)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "sae"
    Trainer(small_synth, out, TrainConfig(**SMALL, wandb="proj"), progress=False).run()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(f.suffix == ".wandb" and f.stat().st_size > 0 for f in runs[0].iterdir())


def test_a_fresh_run_in_the_same_folder_and_each_run_of_a_sweep_get_their_own_wandb_run(
    small_synth, tmp_path, fake_wandb
):
    from mmsae.train.trainer import train_sweep

    out = tmp_path / "sae"
    cfg = TrainConfig(**SMALL, wandb="proj")
    Trainer(small_synth, out, cfg, progress=False).run()
    Trainer(small_synth, out, cfg, overwrite=True, progress=False).run()
    runs = [(tmp_path / f"s{i}", TrainConfig(**{**SMALL, "seed": i, "data_seed": 0}, wandb="proj")) for i in range(2)]
    train_sweep(small_synth, runs, progress=False)
    inits = [c[1] for c in fake_wandb if c[0] == "init"]
    assert len(inits) == 4 and len({i["id"] for i in inits}) == 4  # overwrite: a new run, not the old one
    assert all(i["reinit"] == "create_new" for i in inits)  # one process, several runs: none reused
