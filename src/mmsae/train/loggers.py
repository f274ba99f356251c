"""Where training scalars go besides `train_log.jsonl`: TensorBoard and Weights & Biases, each an
optional extra, each fed exactly the records the JSONL log gets (as `train/<name>`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError


class TensorBoardLog:
    def __init__(self, out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MmsaeError("--tensorboard needs the tensorboard package: pip install 'mmsae[tensorboard]'") from None
        self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, rec: dict[str, Any], step: int) -> None:
        for k, v in rec.items():
            self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    """One W&B run per training run: a fresh run gets a new id, which the checkpoint keeps, so
    `--resume` continues the same W&B run while `--overwrite` (or the same folder on another
    machine) starts its own. Each is a separate run even when a sweep trains several SAEs in one
    process. `WANDB_MODE=offline` keeps it on disk (`OUT/wandb/`) for a later `wandb sync`."""

    def __init__(self, project: str, out: Path, config: dict[str, Any], run_id: str):
        try:
            import wandb
        except ImportError:
            raise MmsaeError("--wandb needs the wandb package: pip install 'mmsae[wandb]'") from None
        try:
            self.run = wandb.init(
                project=project,
                dir=str(out),
                name=out.name,
                id=run_id,
                resume="allow",
                reinit="create_new",
                config=config,
            )
        except Exception as exc:  # no login, no network: say so instead of a wandb traceback
            raise MmsaeError(
                f"--wandb {project}: W&B could not start a run ({' '.join(str(exc).split())[:200]}); run `wandb "
                "login`, or set WANDB_MODE=offline to log to disk"
            ) from None

    def log(self, rec: dict[str, Any], step: int) -> None:
        self.run.log({f"train/{k}": v for k, v in rec.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def open_loggers(cfg, out: Path, run_id: str) -> list[TensorBoardLog | WandbLog]:
    """The scalar logs `cfg` asks for (`tensorboard`, `wandb`); `run_id` names this training run
    (kept by its checkpoint, so a resume logs into the same W&B run)."""
    logs: list[TensorBoardLog | WandbLog] = []
    if cfg.tensorboard:
        logs.append(TensorBoardLog(out))
    if cfg.wandb:
        logs.append(WandbLog(cfg.wandb, out, cfg.to_dict(), run_id))
    return logs
