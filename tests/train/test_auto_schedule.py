"""The automatic training length (`train.schedule.auto_schedule`) that `compare` and `analyze
pareto/stability` use: enough steps on small stores, the old fixed defaults on large ones."""

import math

import pytest

from mmsae.train.config import TrainConfig
from mmsae.train.schedule import MAX_BATCH, MIN_BATCH, MIN_STEPS, auto_schedule, steps_for
from mmsae.train.trainer import Trainer, count_training, scheduled


@pytest.mark.parametrize("min_epochs", [10.0, 20.0])
@pytest.mark.parametrize("n", [1, 7, 63, 64, 500, 3_600, 4_500, 9_000, 18_000, 36_000, 100_000, 153_599])
def test_small_stores_get_at_least_the_minimum_steps(n, min_epochs):
    s = auto_schedule(n, min_epochs=min_epochs)
    assert s.steps >= MIN_STEPS and s.steps == steps_for(n, s.batch_size, s.epochs)
    assert min(n, MIN_BATCH) <= s.batch_size <= min(n, MAX_BATCH)
    assert s.batch_size & (s.batch_size - 1) == 0 or s.batch_size == n  # a power of two, or the whole store
    assert s.epochs >= min_epochs and s.auto
    # no more work than needed: at the batch floor exactly MIN_STEPS; above it, min_epochs passes
    assert s.steps <= 2 * MIN_STEPS or s.epochs == min_epochs


@pytest.mark.parametrize("min_epochs", [10.0, 20.0])
@pytest.mark.parametrize("n", [307_200, 1_000_000, 50_000_000])
def test_large_stores_keep_the_old_defaults(n, min_epochs):
    """Batch 1024 and the command's old epochs: the cap means large stores are not slowed."""
    s = auto_schedule(n, min_epochs=min_epochs)
    assert (s.batch_size, s.epochs) == (1024, min_epochs)
    assert s.steps == math.ceil(min_epochs * n / 1024)


def test_threshold_and_monotone():
    assert auto_schedule(153_600).batch_size == 1024 and auto_schedule(153_599).batch_size == 512
    sizes = [auto_schedule(n).batch_size for n in range(1, 400_000, 997)]
    assert sizes == sorted(sizes)


def test_given_values_are_kept():
    s = auto_schedule(4_000, batch_size=1024, epochs=20)
    assert (s.batch_size, s.epochs, s.steps, s.auto) == (1024, 20.0, 79, False)
    s = auto_schedule(4_000, batch_size=256)  # only the epochs are chosen: still MIN_STEPS
    assert s.batch_size == 256 and s.steps >= MIN_STEPS and s.auto
    s = auto_schedule(4_000, epochs=5)
    assert s.epochs == 5 and s.batch_size == 128
    assert auto_schedule(36_000).describe() == "batch 128, 5,625 steps, 20 epochs"


def test_scheduled_counts_what_the_trainer_trains_on(small_synth):
    """The rule reads the same training split the trainer does (rows, pairs, a modality)."""
    for kw in ({"arch": "topk"}, {"arch": "topk", "modality": "image"}, {"arch": "multimodal"}):
        cfg = TrainConfig(dict_size=64, k=4, device="cpu", **kw)
        cfg2, sched = scheduled(small_synth, cfg, None, None, 20.0)
        t = Trainer(small_synth, "unused", cfg2, progress=False)
        assert t.n_train == count_training(small_synth, cfg)
        assert t.total_steps == sched.steps >= MIN_STEPS
        assert (cfg2.batch_size, cfg2.epochs) == (sched.batch_size, sched.epochs)
