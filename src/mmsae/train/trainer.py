"""The training loop: streams a store, trains one SAE, checkpoints, resumes exactly.

Resuming replays the seeded batch stream up to the checkpoint's step (reading, not training),
so a killed run restarted with `resume=True` ends with the same weights as an uninterrupted one.
The trainer asks the data layer once (`data.view.TrainingData`: the rows or pairs, their count and
batches) and names no architecture: batches, normalisation statistics and the initialisation sample
go to the SAE keyed by its input groups (`models.base.TrainingHooks`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsae.data.prefetch import Prefetch
from mmsae.data.store import EmbeddingStore
from mmsae.data.stream import StreamConfig
from mmsae.data.view import TrainingData
from mmsae.device import reads_are_free, resolve_device
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write_stream, dumps, remove_stale_tmp, write_json_atomic
from mmsae.models.base import SparseAutoencoder, Stats
from mmsae.models.io import CONFIG_NAME, read_config, save_sae
from mmsae.models.registry import build_sae
from mmsae.train.config import TrainConfig
from mmsae.train.distributed import from_env
from mmsae.train.init import normalization_stats
from mmsae.train.loggers import new_run_id, open_loggers
from mmsae.train.schedule import Schedule, auto_schedule, lr_factor, steps_for

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"
MIN_HELD_OUT = 2
"""Fewest held-out rows (or pairs) worth a validation split: FVU divides by the rows' variance,
which one row does not have. A smaller split is folded back into training (see `Trainer`)."""


@dataclass(frozen=True)
class TrainResult:
    """Where the SAE went and how training ended."""

    out_dir: str
    steps: int
    val_metrics: dict[str, Any]
    """Metrics of the saved SAE: on the held-out split when `held_out`, else on the training rows
    (`--val-fraction 0`, or a store too small to hold rows out); empty when they are undefined."""
    seconds: float
    vectors_per_second: float
    held_out: bool = True
    """Whether `val_metrics` come from rows the SAE did not train on."""
    notes: tuple[str, ...] = ()
    """One-line remarks on how the run differs from what was asked (e.g. no held-out split)."""


def training_data(store: EmbeddingStore, cfg: TrainConfig) -> tuple[TrainingData, TrainConfig, list[str]]:
    """What `cfg` trains on (asked of the store once), `cfg` as it will run, and notes: when the
    store is too small to hold out MIN_HELD_OUT rows (pairs) and still train on some, every row
    trains (`val_fraction` 0) and the metrics are labelled training metrics. Deterministic (the
    split is a hash), so a resumed run, a checkpoint and the saved `train_config` see the same choice."""
    data = TrainingData(store, pairs=cfg.paired, val_fraction=cfg.val_fraction, modality=cfg.modality)
    notes = []
    if cfg.val_fraction > 0:
        n_val, n_train = data.count("val"), data.count("train")
        if n_val < MIN_HELD_OUT or n_train == 0:
            notes.append(
                f"--val-fraction {cfg.val_fraction:g} would hold out {n_val} of {n_val + n_train} {data.unit} "
                f"(FVU needs at least {MIN_HELD_OUT}, and training at least 1); training on all of them "
                "instead, so the metrics are training metrics, not held-out ones"
            )
            cfg, data = dataclasses.replace(cfg, val_fraction=0.0), data.holding_out_nothing()
    return data.with_mix(cfg.mix_ratio()), cfg, notes


def count_training(store: EmbeddingStore | str | os.PathLike, cfg: TrainConfig) -> int:
    """Rows (pairs, for paired SAEs) one epoch of training with `cfg` reads: the training split
    (all rows when nothing can be held out), one modality or mix if asked."""
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    return training_data(store, cfg)[0].count()


def scheduled(
    store: EmbeddingStore | str | os.PathLike,
    cfg: TrainConfig,
    batch_size: int | None,
    epochs: float | None,
    min_epochs: float,
) -> tuple[TrainConfig, Schedule]:
    """`cfg` with the batch size and epochs `auto_schedule` picks for its training split (a value
    given, not None, is kept), and that schedule: how `compare` and `analyze pareto/stability`
    size every SAE they train."""
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    n = count_training(store, cfg)
    if n == 0:
        raise MmsaeError(
            f"{store.root} has no training rows for {cfg.arch}"
            + (f" of modality {cfg.modality!r}" if cfg.modality else "")
        )
    sched = auto_schedule(n, batch_size, epochs, min_epochs=min_epochs)
    return dataclasses.replace(cfg, batch_size=sched.batch_size, epochs=sched.epochs), sched


_CHECKPOINT_KEYS = ("step", "model", "optimizer", "scheduler", "stats", "since_fired", "train_config")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, or a one-line error saying it is damaged and what to do."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty or not a checkpoint: pickle, zip and torch errors alike
        raise MmsaeError(
            f"{path} is damaged ({type(exc).__name__}); delete it to start over, or pass --overwrite"
        ) from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise MmsaeError(
            f"{path} is not a complete checkpoint (no {', '.join(missing)}); delete it to start over, "
            "or pass --overwrite"
        )
    return saved


LOGGING_FIELDS = ("tensorboard", "wandb", "log_every")
"""Options that only decide where scalars are logged: a resumed run may change them."""


def resume_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The options that differ between a checkpoint's config and `cfg`, other than logging ones.
    The saved config is read back through `TrainConfig`, so a field added since the checkpoint was
    written counts as its default, not as a difference."""
    try:
        was = TrainConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError, MmsaeError):
        was = saved  # a config this version refuses: compare as written, so the message names the fields
    was, now = (json.loads(json.dumps(d)) for d in (was, cfg.to_dict()))
    return sorted(k for k in set(was) | set(now) if k not in LOGGING_FIELDS and was.get(k) != now.get(k))


def store_fingerprint(store: EmbeddingStore) -> dict[str, Any]:
    """What a resume needs unchanged: the batches are drawn from exactly these rows."""
    m = store.manifest
    return {"rows": m.n_rows, "shards": len(m.shards), "counts": dict(sorted(m.counts.items()))}


@dataclass
class _State:
    """What changes while one SAE trains."""

    sae: SparseAutoencoder
    stats: Stats
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    stats_dev: Stats
    since_fired_F: torch.Tensor
    step: int
    logs: list
    """TensorBoard / W&B logs (`train.loggers`), on the main process only."""
    log_f: Any
    bar: Any
    t0: float
    rows_done: int = 0
    unchecked: list = dataclasses.field(default_factory=list)
    """(non-finite flag in host memory, the event of its copy, loss, step, batch) of steps whose
    flag the host has not yet read (`Trainer._settle`)."""


class Trainer:
    """One SAE, one store. `run()` trains (or resumes) and saves the SAE folder."""

    def __init__(
        self,
        store: EmbeddingStore | str | os.PathLike,
        out_dir: str | os.PathLike,
        cfg: TrainConfig,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ):
        self.store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
        self.out = Path(out_dir)
        if len(self.store) == 0:
            raise MmsaeError(f"{self.store.root} holds no rows; import embeddings into it before training")
        # before the resume check: a resumed run makes the same choice
        self.data, cfg, self.notes = training_data(self.store, cfg)
        self.cfg = cfg
        self.groups = cfg.groups
        self.held_out = cfg.val_fraction > 0
        self.dist = from_env()
        self.run_id = new_run_id()  # names this training run in its logs (W&B); a resume takes its checkpoint's
        self.progress = progress and self.dist.main
        self.device = resolve_device(self.dist.device_for(cfg.device))
        if cfg.batch_size % self.dist.world:
            raise MmsaeError(f"--batch-size {cfg.batch_size} does not split evenly over {self.dist.world} processes")
        ckpt = self.out / CHECKPOINT_NAME
        if self.out.exists() and not resume and not overwrite:
            if (self.out / CONFIG_NAME).exists() or ckpt.exists():
                raise MmsaeError(
                    f"{self.out} already holds a {'trained SAE' if (self.out / CONFIG_NAME).exists() else 'checkpoint'}; "
                    "pass --resume to continue, --overwrite to replace it, or choose another --out"
                )
        if resume and not ckpt.exists() and (self.out / CONFIG_NAME).exists():
            if (self.out / "metrics.json").exists():
                raise MmsaeError(f"{self.out} is already fully trained; nothing to resume")
            # killed after saving the SAE but before its metrics, with no checkpoint to resume from (a run
            # shorter than --checkpoint-every): training again from the same seed gives the same SAE
            resume = False
        self.resume = resume and ckpt.exists()
        if resume and self.resume:
            saved = load_checkpoint(ckpt)
            diff = resume_differences(saved["train_config"], cfg)
            if diff:
                raise MmsaeError(f"cannot resume {self.out}: options differ from the checkpoint's ({', '.join(diff)})")
            was, now = saved.get("store"), store_fingerprint(self.store)
            if was is not None and was != now:
                raise MmsaeError(
                    f"cannot resume {self.out}: the store changed since the checkpoint ({was['rows']} rows in "
                    f"{was['shards']} shards then, {now['rows']} in {now['shards']} now), so the batches "
                    "would differ; train anew with --overwrite"
                )

        self.n_train = self.data.count()
        if self.n_train == 0:
            raise MmsaeError(
                f"{self.store.root} has no training {self.data.describe()}"
                f" (rows by modality: {dict(self.store.manifest.counts)})"
            )
        if self.n_train < cfg.batch_size:
            raise MmsaeError(
                f"the training split has {self.n_train} {self.data.unit}, fewer than one batch of {cfg.batch_size}; "
                f"pass --batch-size {self.n_train} or less"
            )
        self.total_steps = cfg.steps or steps_for(self.n_train, cfg.batch_size, cfg.epochs)
        self.dead_after = cfg.dead_after or min(self.n_train, 10_000_000)
        self.stream_cfg = self.data.stream_config(
            cfg.batch_size, cfg.stream_seed, cfg.shuffle_buffer, part=(self.dist.rank, self.dist.world)
        )

    def _batches(self, cfg: StreamConfig):
        """Raw batches, each a tuple of [B, D] arrays in the order of the SAE's input `groups`."""
        return self.data.batches(cfg)

    # --- set-up ------------------------------------------------------------------------------------
    def _init_state(self) -> tuple[SparseAutoencoder, Stats]:
        """A fresh model, plus the normalisation `stats`: {group: (mean_D, scale)} for each of the
        SAE's input groups (`TrainingHooks.groups`)."""
        cfg = self.cfg
        sample_cfg = self.data.stream_config(
            min(cfg.init_rows, self.n_train), cfg.stream_seed + 10_007, cfg.shuffle_buffer
        )
        samples = dict(zip(self.groups, next(self._batches(sample_cfg))))
        if not all(np.isfinite(a).all() for a in samples.values()):
            raise MmsaeError(
                f"the store holds NaN/inf embeddings (found in the rows sampled to initialise the SAE); "
                f"`mmsae info {self.store.root} --check` lists them"
            )
        sae = build_sae(cfg.arch, **cfg.model_config(self.store.dim))
        sae.reset_parameters(generator=torch.Generator().manual_seed(cfg.seed))
        stats: Stats = {}
        xs = {}
        for group, arr in samples.items():
            sample = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            mean_D, scale = normalization_stats(sample, cfg.resolved_normalize())
            stats[group] = (mean_D, scale)
            xs[group] = sample.sub_(mean_D).mul_(scale)  # in place: the sample is this function's own copy
        sae.init_from_sample_(xs, cfg.b_dec_init)
        return sae, stats

    def _optimizer(self, sae: SparseAutoencoder) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.cfg
        # the fused kernel reads each parameter once per step: 10× faster than foreach on CPU
        opt = torch.optim.AdamW(
            sae.parameters(),
            lr=cfg.lr,
            betas=(0.9, 0.999),
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        warm = int(cfg.warmup_frac * self.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, self.total_steps, warm, cfg.decay, cfg.min_lr_frac)
        )
        return opt, sched

    # --- loop ----------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        state = self.start()
        batches = self._batches(self.stream_cfg)
        for _ in range(state.step):  # replay the stream to where the checkpoint stopped
            next(batches)
        state.t0 = time.perf_counter()
        with Prefetch(self._staged(batches)) as ahead:
            try:
                while state.step < self.total_steps:
                    self.step(state, next(ahead))
                self._settle(state)
            finally:
                self.close(state)
        return self.finish(state)

    def start(self) -> _State:
        """Model, optimizer, logs: everything before the first step (or after the checkpoint's)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        main = self.dist.main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(self.out)  # left by a run killed mid-write
            write_json_atomic(self.out / "train_config.json", cfg.to_dict())
        if self.resume:
            saved = load_checkpoint(self.out / CHECKPOINT_NAME)
            sae = build_sae(cfg.arch, **cfg.model_config(self.store.dim))
            sae.load_state_dict(saved["model"])
            stats = {g: (v["mean"], float(v["scale"])) for g, v in saved["stats"].items()}
            start, since_fired_F = int(saved["step"]), saved["since_fired"]
            self.run_id = saved.get("run_id") or new_run_id()  # checkpoints from before run ids had none
        else:
            sae, stats = self._init_state()
            start, since_fired_F = 0, torch.zeros(cfg.dict_size, dtype=torch.long)
            if main:
                (self.out / LOG_NAME).unlink(missing_ok=True)
        sae.to(self.device).train()
        self.dist.broadcast_(sae)  # identical already (same seed, same data); made certain
        if cfg.select_dtype != "float32":
            sae.select_dtype = getattr(torch, cfg.select_dtype)
        opt, sched = self._optimizer(sae)
        if self.resume:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        return _State(
            sae=sae,
            stats=stats,
            opt=opt,
            sched=sched,
            stats_dev={g: (m.to(self.device), sc) for g, (m, sc) in stats.items()},
            since_fired_F=since_fired_F.to(self.device),
            step=start,
            logs=open_loggers(cfg, self.out, self.run_id) if main else [],
            log_f=open(self.out / LOG_NAME, "a") if main else open(os.devnull, "w"),
            bar=tqdm(
                total=self.total_steps, initial=start, desc=f"train {cfg.arch}", unit="step", disable=not self.progress
            ),
            t0=time.perf_counter(),
        )

    def _staged(self, batches):
        """`batches` as they should reach the step. For a CUDA device each array is copied into
        page-locked memory here, in the prefetch thread, so the step's copy to the device is
        asynchronous (from pageable memory it would wait for the device's queue to drain)."""
        if self.device.type != "cuda":
            yield from batches
            return
        for batch in batches:
            yield tuple(torch.from_numpy(np.ascontiguousarray(a)).pin_memory() for a in batch)

    def _prep(self, state: _State, arr, group: str) -> torch.Tensor:
        mean, scale = state.stats_dev[group]
        x = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(arr))
        x_BD = x.to(self.device, non_blocking=True).float()
        return torch.sub(x_BD, mean).mul_(scale)  # one new tensor: the batch itself may be shared (sweeps)

    def _normalized(self, state: _State, batch) -> dict[str, torch.Tensor]:
        return {g: self._prep(state, arr, g) for g, arr in zip(self.groups, batch)}

    def step(self, state: _State, batch) -> None:
        """One optimizer step on one batch (a tuple of [B, D] arrays, one per input group).

        Outside logging and checkpoint steps the trainer reads no device value on the host (the
        model's loss may: TopK's AuxK counts the dead latents), so on a GPU the host queues
        step t + 1 while the device still runs step t. A non-finite loss is caught without a
        read: the fused optimizer skips the update on the device (`found_inf`), and the host
        reads the flag one step later (`_settle`)."""
        cfg, sae, opt, sched = self.cfg, state.sae, state.opt, state.sched
        step = state.step
        dead_F = state.since_fired_F >= self.dead_after
        xs = self._normalized(state, batch)
        out = sae.training_loss(xs, dead_F, step, self.total_steps)
        n_examples = len(batch[0])
        bad = self.dist.any_(~torch.isfinite(out.loss.detach()).reshape(()))
        # the fused AdamW skips a step whose found_inf is set (a resumed optimizer keeps its saved groups')
        skips = all(g.get("fused") for g in opt.param_groups)
        if not skips and bool(bad):  # an optimizer that cannot skip: read the flag now
            self._stop_non_finite(step, batch, f"the loss is {float(out.loss.detach())}")
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.dist.average_grads_(sae.parameters())
        sae.remove_parallel_grads_()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        if skips:
            opt.found_inf = bad.float()
        opt.step()
        sched.step()
        sae.normalize_decoder_()
        if skips:
            self._settle(state, (*self._to_host(bad), out.loss.detach(), step, batch))
        state.since_fired_F += n_examples * self.dist.world
        state.since_fired_F.masked_fill_(self.dist.any_(out.fired_F), 0)
        state.rows_done += n_examples * len(xs) * self.dist.world

        if step % cfg.log_every == 0 or step == self.total_steps - 1:
            self._settle(state)  # this step reads anyway: a non-finite one stops before it is logged
            recons = out.recons or {self.groups[0]: out.x_hat_BD}
            with torch.no_grad():
                fvus = {g: float((recons[g] - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()) for g, x in xs.items()}
            fvu = sum(fvus.values()) / len(fvus)
            rec = {
                "step": step + 1,
                "loss": float(out.loss.detach()),
                "fvu": fvu,
                "l0": float(out.l0),
                "dead_fraction": float(dead_F.float().mean()),
                "lr": sched.get_last_lr()[0],
                "seconds": time.perf_counter() - state.t0,
                **{name: float(v) for name, v in out.parts.items()},
            }
            if len(fvus) > 1:
                rec.update({f"fvu_{g}": v for g, v in fvus.items()})
            state.log_f.write(dumps(rec, indent=None) + "\n")
            state.bar.set_postfix(
                loss=f"{rec['loss']:.4g}", fvu=f"{fvu:.4f}", l0=f"{rec['l0']:.1f}", dead=f"{rec['dead_fraction']:.3f}"
            )
            scalars = {k: v for k, v in rec.items() if k != "step"}
            for log in state.logs:
                log.log(scalars, step + 1)
        state.bar.update(1)
        state.step = step + 1
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < self.total_steps:
            # on every rank (their weights are the same), so that all stop at the same step
            self._settle(state)
            if not all(bool(torch.isfinite(p).all()) for p in sae.parameters()):
                self._stop_non_finite(step, batch, "the weights hold NaN/inf after this step")
            if self.dist.main:
                state.log_f.flush()
                self._checkpoint(sae, opt, sched, state.step, state.stats, state.since_fired_F)

    def _settle(self, state: _State, new=None) -> None:
        """Read the non-finite flags of earlier steps (all of them without `new`; with it, all but
        the newest on an accelerator, where reading the newest would stall the device's queue)
        and stop at the first that is set. Skipped steps left the weights as they were."""
        if new is not None:
            state.unchecked.append(new)
        keep = 1 if new is not None and not reads_are_free(self.device) else 0
        while len(state.unchecked) > keep:
            bad_host, copied, loss, step, batch = state.unchecked.pop(0)
            if copied is not None:
                copied.synchronize()  # waits for that step's work, not for the steps queued since
            if bad_host.numpy().any():
                self._stop_non_finite(step, batch, f"the loss is {float(loss)}")

    def _to_host(self, t: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(`t` in host memory, an event marking the copy's end, or None where `t` was there).
        On a GPU the copy goes into page-locked memory without waiting: `.item()` would wait
        for every kernel queued so far, the next step's included."""
        if self.device.type != "cuda":
            return t, None
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(self.device))  # the copy's stream: under torchrun not cuda:0's
        return host, copied

    def _stop_non_finite(self, step: int, batch, what: str) -> None:
        """One line: the step, whether the input batch was the cause, and what is kept."""
        bad = sum(int((~np.isfinite(np.asarray(a, dtype=np.float32))).any(axis=1).sum()) for a in batch)
        bad = int(self.dist.sum_(torch.tensor([bad], device=self.device)))  # every rank stops here together
        cause = (
            f"its input batch holds {bad} row(s) with NaN/inf (`mmsae info {self.store.root} --check` lists them)"
            if bad
            else f"the input is finite, so training diverged: lower --lr (now {self.cfg.lr:g}) or keep "
            f"--grad-clip on (now {self.cfg.grad_clip:g})"
        )
        ckpt = self.out / CHECKPOINT_NAME
        kept = (
            f"the checkpoint of step {int(load_checkpoint(ckpt)['step'])} is kept (--resume after fixing the cause)"
            if ckpt.exists()
            else "no SAE was saved"
        )
        raise MmsaeError(f"training stopped at step {step + 1} of {self.total_steps}: {what}; {cause}; {kept}")

    def close(self, state: _State) -> None:
        state.bar.close()
        state.log_f.close()
        for log in state.logs:
            log.close()

    @torch.no_grad()
    def _calibrate(self, state: _State) -> None:
        """Let the architecture set what it estimated during training from the final weights, on
        the first training batches of a fresh stream (`TrainingHooks.calibrate_`)."""
        n = state.sae.calibration_batches
        if n <= 0:
            return
        stream = self._batches(self.stream_cfg)
        state.sae.eval()
        state.sae.calibrate_(self._normalized(state, next(stream)) for _ in range(min(n, self.total_steps)))

    def finish(self, state: _State) -> TrainResult:
        """Fold the normalisation in, save (rank 0), then measure: a measurement that fails cannot
        cost the trained SAE."""
        cfg, sae, stats, rows_done = self.cfg, state.sae, state.stats, state.rows_done
        seconds = time.perf_counter() - state.t0
        if not self.dist.main:  # rank 0 validates and saves; the others wait so the SAE is whole when torchrun returns
            self.dist.barrier()
            return TrainResult(
                str(self.out),
                self.total_steps,
                {},
                seconds,
                rows_done / max(seconds, 1e-9),
                self.held_out,
                tuple(self.notes),
            )
        self._calibrate(state)
        final = self._fold(sae, stats)
        provenance = {
            "store": str(self.store.root.resolve()),
            "store_model_id": self.store.manifest.model_id,
            "n_train_rows": self.n_train,
            "world_size": self.dist.world,
            "seed": cfg.seed,
            "steps": self.total_steps,
            "normalization": {
                "mode": cfg.resolved_normalize(),
                "scale": {g: s for g, (_, s) in stats.items()},
                "folded": True,
            },
            "train_config": cfg.to_dict(),
            "held_out": self.held_out,
            "notes": list(self.notes),
            "val_metrics": {},  # filled in below, once measured
        }
        # the SAE first: nothing after this point can lose the trained weights. The checkpoint goes
        # last, so a run killed while measuring is finished by --resume rather than left without metrics.
        save_sae(final, self.out, provenance)
        val = self._validate(final)
        split = "val" if self.held_out else "train"
        write_json_atomic(
            self.out / "metrics.json", {**val, "split": split, "held_out": self.held_out, "notes": self.notes}
        )
        config = read_config(self.out)
        config["provenance"].update(val_metrics=val, notes=list(self.notes))
        write_json_atomic(self.out / CONFIG_NAME, config)
        (self.out / CHECKPOINT_NAME).unlink(missing_ok=True)
        self.dist.barrier()
        vps = rows_done / seconds if seconds > 0 else float("nan")
        return TrainResult(str(self.out), self.total_steps, val, seconds, vps, self.held_out, tuple(self.notes))

    def _checkpoint(self, sae, opt, sched, step, stats: Stats, since_fired_F) -> None:
        obj = {
            "step": step,
            "model": {k: v.detach().cpu() for k, v in sae.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "stats": {g: {"mean": m.cpu(), "scale": s} for g, (m, s) in stats.items()},
            "since_fired": since_fired_F.cpu(),
            "train_config": json.loads(json.dumps(self.cfg.to_dict())),
            "store": store_fingerprint(self.store),
            "run_id": self.run_id,
        }
        atomic_write_stream(self.out / CHECKPOINT_NAME, lambda f: torch.save(obj, f))

    def _fold(self, sae: SparseAutoencoder, stats: Stats) -> SparseAutoencoder:
        final = copy.deepcopy(sae).cpu().eval()
        final.fold_input_normalization_(stats)
        return final

    def _validate(self, sae: SparseAutoencoder) -> dict[str, Any]:
        """Metrics on the held-out split, or on the training rows when there is none; {} with a note
        when they are undefined (fewer than 2 rows, or rows without variance)."""
        from mmsae.metrics.evaluate import evaluate_store

        split, vf = ("val", self.cfg.val_fraction) if self.held_out else (self.data.split, 0.1)
        out: dict[str, Any] = {}
        try:
            res = evaluate_store(
                sae.to(self.device),
                self.store,
                split=split,
                val_fraction=vf,
                modality=self.cfg.modality,
                device=self.device,
            )
            if res.n_rows >= MIN_HELD_OUT:
                out = res.to_json()
                # "train": the rows it trained on (all of them when nothing is held out)
                out.update(split="val" if self.held_out else "train", held_out=self.held_out)
                if len(self.groups) > 1:  # cross-modal metrics need matched pairs
                    from mmsae.metrics.crossmodal import crossmodal_report

                    cm = crossmodal_report(sae, self.store, split=split, val_fraction=vf, device=self.device)
                    out["crossmodal"] = cm.to_json()
        except ZeroDivisionError:  # FVU divides by the rows' spread, which identical rows do not have
            out = {}
        finally:
            sae.cpu()
        if not out:
            self.notes.append(
                f"no metrics: FVU is undefined on these {'held-out' if self.held_out else 'training'} rows (fewer "
                f"than {MIN_HELD_OUT}, or some modality's rows all alike); the SAE is saved"
            )
        return out


def train_sweep(
    store, runs: list[tuple[str | os.PathLike, TrainConfig]], overwrite: bool = False, progress: bool = True
) -> list[TrainResult]:
    """Train several SAEs in one read of the data: every batch is read once and stepped by each
    SAE in turn (as saev does). The runs must agree on everything that decides the batches
    (batch size, data order seed, split, modality, mix, shuffle buffer); each run ends exactly as
    if trained alone. Resuming a sweep is not supported: resume its runs one by one."""
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    if not runs:
        raise MmsaeError("a sweep needs at least one run")
    trainers = [Trainer(store, out, cfg, overwrite=overwrite, progress=progress) for out, cfg in runs]
    first = trainers[0]
    for t in trainers[1:]:
        if (t.stream_cfg, t.groups) != (first.stream_cfg, first.groups):
            diff = [
                f
                for f in ("batch_size", "seed", "split", "val_fraction", "modality", "buffer_rows", "subsample")
                if getattr(t.stream_cfg, f) != getattr(first.stream_cfg, f)
            ]
            raise MmsaeError(
                f"the runs of a sweep share every batch, so they must agree on how batches are drawn; "
                f"{t.out} differs from {first.out} in {', '.join(diff) or 'pairing'} (to sweep seeds, "
                "fix data_seed)"
            )
    if len({str(t.out.resolve()) for t in trainers}) < len(trainers):
        raise MmsaeError("two runs of the sweep write to the same folder")
    states = [t.start() for t in trainers]
    t0 = time.perf_counter()
    for s in states:
        s.t0 = t0
    with Prefetch(first._staged(first._batches(first.stream_cfg))) as batches:
        try:
            for _ in range(max(t.total_steps for t in trainers)):
                batch = next(batches)
                for t, s in zip(trainers, states):
                    if s.step < t.total_steps:
                        t.step(s, batch)
            for t, s in zip(trainers, states):
                t._settle(s)
        finally:
            for t, s in zip(trainers, states):
                t.close(s)
    return [t.finish(s) for t, s in zip(trainers, states)]


def train(
    store,
    out_dir,
    cfg: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **overrides,
) -> TrainResult:
    """Train an SAE from a store into `out_dir` (the Python form of `mmsae train`)."""
    cfg = cfg or TrainConfig()
    if overrides:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
    return Trainer(store, out_dir, cfg, resume=resume, overwrite=overwrite, progress=progress).run()
