"""The training loop: streams a store, trains one SAE, checkpoints, resumes exactly.

Resuming replays the seeded batch stream up to the checkpoint's step (reading, not training),
so a killed run restarted with `resume=True` ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmsae.data.store import EmbeddingStore
from mmsae.data.stream import StreamConfig, iter_batches, shard_mask
from mmsae.errors import MmsaeError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.io import CONFIG_NAME, save_sae
from mmsae.models.registry import build_sae
from mmsae.train.config import TrainConfig
from mmsae.train.init import geometric_median, normalization_stats
from mmsae.train.schedule import lr_factor

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"


@dataclass(frozen=True)
class TrainResult:
    """Where the SAE went and how training ended."""

    out_dir: str
    steps: int
    val_metrics: dict[str, Any]
    seconds: float
    vectors_per_second: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MmsaeError(f"device {name!r} asked for, but CUDA is not available here")
    return torch.device(name)


def count_rows(store: EmbeddingStore, split: str, val_fraction: float, modality: str | None) -> int:
    return sum(int(shard_mask(store, i, split, val_fraction, modality).sum()) for i in range(len(store.shards)))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Trainer:
    """One SAE, one store. `run()` trains (or resumes) and saves the SAE folder."""

    def __init__(self, store: EmbeddingStore | str | os.PathLike, out_dir: str | os.PathLike, cfg: TrainConfig,
                 resume: bool = False, overwrite: bool = False, progress: bool = True):
        self.store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
        self.out = Path(out_dir)
        self.cfg = cfg
        self.progress = progress
        self.device = resolve_device(cfg.device)
        ckpt = self.out / CHECKPOINT_NAME
        if self.out.exists() and not resume and not overwrite:
            if (self.out / CONFIG_NAME).exists() or ckpt.exists():
                raise MmsaeError(
                    f"{self.out} already holds a {'trained SAE' if (self.out / CONFIG_NAME).exists() else 'checkpoint'}; "
                    "pass --resume to continue, --overwrite to replace it, or choose another --out"
                )
        if resume and not ckpt.exists() and (self.out / CONFIG_NAME).exists():
            raise MmsaeError(f"{self.out} is already fully trained; nothing to resume")
        self.resume = resume and ckpt.exists()
        if resume and self.resume:
            saved = torch.load(ckpt, map_location="cpu", weights_only=True)
            if saved["train_config"] != json.loads(json.dumps(cfg.to_dict())):
                diff = sorted(k for k in saved["train_config"] if saved["train_config"][k] != json.loads(json.dumps(cfg.to_dict())).get(k))
                raise MmsaeError(f"cannot resume {self.out}: options differ from the checkpoint's ({', '.join(diff)})")

        self.n_train = count_rows(self.store, "train", cfg.val_fraction, cfg.modality)
        if self.n_train < cfg.batch_size:
            raise MmsaeError(f"the training split has {self.n_train} rows, fewer than one batch of {cfg.batch_size}")
        self.total_steps = cfg.steps or max(1, math.ceil(cfg.epochs * self.n_train / cfg.batch_size))
        self.dead_after = cfg.dead_after or min(self.n_train, 10_000_000)
        self.stream_cfg = StreamConfig(batch_size=cfg.batch_size, seed=cfg.seed, split="train", val_fraction=cfg.val_fraction,
                                       modality=cfg.modality, buffer_rows=cfg.shuffle_buffer)

    # --- set-up ------------------------------------------------------------------------------------
    def _init_state(self) -> tuple[SparseAutoencoder, torch.Tensor, float]:
        cfg = self.cfg
        sample_cfg = StreamConfig(batch_size=min(cfg.init_rows, self.n_train), seed=cfg.seed + 10_007, split="train",
                                  val_fraction=cfg.val_fraction, modality=cfg.modality, buffer_rows=cfg.shuffle_buffer)
        sample = torch.from_numpy(next(iter_batches(self.store, sample_cfg)))
        mean_D, scale = normalization_stats(sample, cfg.normalize)
        sae = build_sae(cfg.arch, **cfg.model_config(self.store.dim))
        gen = torch.Generator().manual_seed(cfg.seed)
        sae.reset_parameters(generator=gen)
        x = (sample - mean_D) * scale
        with torch.no_grad():
            if cfg.b_dec_init == "geometric_median":
                sae.b_dec.copy_(geometric_median(x[:16384]))
            elif cfg.b_dec_init == "mean":
                sae.b_dec.copy_(x.mean(0))
        return sae, mean_D, scale

    def _optimizer(self, sae: SparseAutoencoder) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.cfg
        opt = torch.optim.AdamW(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
        warm = int(cfg.warmup_frac * self.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, self.total_steps, warm, cfg.decay, cfg.min_lr_frac))
        return opt, sched

    # --- loop ----------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        if self.resume:
            saved = torch.load(self.out / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
            sae = build_sae(cfg.arch, **cfg.model_config(self.store.dim))
            sae.load_state_dict(saved["model"])
            mean_D, scale = saved["mean"], float(saved["scale"])
            start, since_fired_F = int(saved["step"]), saved["since_fired"]
        else:
            sae, mean_D, scale = self._init_state()
            start, since_fired_F = 0, torch.zeros(cfg.dict_size, dtype=torch.long)
            (self.out / LOG_NAME).unlink(missing_ok=True)
        sae.to(self.device).train()
        opt, sched = self._optimizer(sae)
        if self.resume:
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
        mean_dev = mean_D.to(self.device)
        since_fired_F = since_fired_F.to(self.device)
        tb = self._tensorboard()

        batches = iter_batches(self.store, self.stream_cfg)
        for _ in range(start):  # replay the stream to where the checkpoint stopped
            next(batches)
        log_f = open(self.out / LOG_NAME, "a")
        bar = tqdm(total=self.total_steps, initial=start, desc=f"train {cfg.arch}", unit="step", disable=not self.progress)
        t0, rows_done = time.perf_counter(), 0
        try:
            for step in range(start, self.total_steps):
                x_BD = (torch.from_numpy(next(batches)).to(self.device, non_blocking=True) - mean_dev) * scale
                dead_F = since_fired_F >= self.dead_after
                out = sae.training_loss(x_BD, dead_F, step, self.total_steps)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                sae.remove_parallel_grads_()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                sae.normalize_decoder_()
                since_fired_F += len(x_BD)
                since_fired_F[out.fired_F] = 0
                rows_done += len(x_BD)

                if step % cfg.log_every == 0 or step == self.total_steps - 1:
                    with torch.no_grad():
                        fvu = float((out.x_hat_BD - x_BD).pow(2).sum() / (x_BD - x_BD.mean(0)).pow(2).sum())
                    rec = {"step": step + 1, "loss": float(out.loss.detach()), "fvu": fvu, "l0": float(out.l0),
                           "dead_fraction": float(dead_F.float().mean()), "lr": sched.get_last_lr()[0], **out.parts}
                    log_f.write(json.dumps(rec) + "\n")
                    bar.set_postfix(loss=f"{rec['loss']:.4g}", fvu=f"{fvu:.4f}", l0=f"{rec['l0']:.1f}",
                                    dead=f"{rec['dead_fraction']:.3f}")
                    if tb is not None:
                        for k, v in rec.items():
                            if k != "step":
                                tb.add_scalar(f"train/{k}", v, step + 1)
                bar.update(1)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < self.total_steps:
                    log_f.flush()
                    self._checkpoint(sae, opt, sched, step + 1, mean_D, scale, since_fired_F)
        finally:
            bar.close()
            log_f.close()
            if tb is not None:
                tb.close()
        seconds = time.perf_counter() - t0
        final = self._fold(sae, mean_D, scale)
        val = self._validate(final)
        provenance = {
            "store": str(self.store.root.resolve()),
            "store_model_id": self.store.manifest.model_id,
            "n_train_rows": self.n_train,
            "seed": cfg.seed,
            "steps": self.total_steps,
            "normalization": {"mode": cfg.normalize, "scale": scale, "folded": True},
            "train_config": cfg.to_dict(),
            "val_metrics": val,
        }
        save_sae(final, self.out, provenance)
        (self.out / "metrics.json").write_text(json.dumps({"split": "val", **val}, indent=2))
        (self.out / CHECKPOINT_NAME).unlink(missing_ok=True)
        vps = rows_done / seconds if seconds > 0 else float("nan")
        return TrainResult(str(self.out), self.total_steps, val, seconds, vps)

    def _checkpoint(self, sae, opt, sched, step, mean_D, scale, since_fired_F) -> None:
        _atomic_torch_save({
            "step": step,
            "model": {k: v.detach().cpu() for k, v in sae.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "mean": mean_D.cpu(),
            "scale": scale,
            "since_fired": since_fired_F.cpu(),
            "train_config": json.loads(json.dumps(self.cfg.to_dict())),
        }, self.out / CHECKPOINT_NAME)

    def _fold(self, sae: SparseAutoencoder, mean_D: torch.Tensor, scale: float) -> SparseAutoencoder:
        final = copy.deepcopy(sae).cpu().eval()
        final.fold_input_normalization_(mean_D, scale)
        return final

    def _validate(self, sae: SparseAutoencoder) -> dict[str, Any]:
        from mmsae.metrics.evaluate import evaluate_store

        res = evaluate_store(sae.to(self.device), self.store, split="val", val_fraction=self.cfg.val_fraction,
                             modality=self.cfg.modality, device=self.device)
        sae.cpu()
        if res.get("n_rows", 0) == 0:  # no held-out rows (tiny store)
            return {}
        return {k: v for k, v in res.items() if not k.startswith("_")}

    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MmsaeError("--tensorboard needs the tensorboard package: pip install 'mmsae[tensorboard]'") from None
        return SummaryWriter(str(self.out / "tensorboard"))


def train(store, out_dir, cfg: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, **overrides) -> TrainResult:
    """Train an SAE from a store into `out_dir` (the Python form of `mmsae train`)."""
    cfg = cfg or TrainConfig()
    if overrides:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
    return Trainer(store, out_dir, cfg, resume=resume, overwrite=overwrite, progress=progress).run()
