"""Sweeps: a grid of training options, each combination one SAE, all trained in one read of the
data by `train_sweep` (the Python form of `mmsae train --sweep k=16,32 --sweep seed=0,1`)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from mmsae.errors import MmsaeError
from mmsae.train.config import TrainConfig, check_architecture_options


def sweep_runs(out: str | Path, cfg: TrainConfig, specs: list[str]) -> list[tuple[str, TrainConfig]]:
    """The grid of `OPTION=V1,V2` specs (`mmsae train --sweep`): one (folder, config) per combination,
    the folder named after the values (`OUT/k-16_seed-0`). Feed the result to `train_sweep`."""
    axes = []
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not eq or not values.strip():
            raise MmsaeError(f"--sweep expects OPTION=V1,V2,..., got {spec!r}")
        if name not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise MmsaeError(f"--sweep: unknown training option {name!r}")
        current = getattr(cfg, name)
        typ = type(current) if current is not None else (int if name in ("steps", "data_seed", "dead_after") else str)
        try:
            parsed = [typ(v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            raise MmsaeError(f"--sweep {name}: values must be {typ.__name__}s, got {values!r}") from None
        axes.append((name, parsed))
    names = [n for n, _ in axes]
    if len(set(names)) < len(names):
        raise MmsaeError("--sweep names an option twice")
    if "seed" in names and cfg.data_seed is None:
        cfg = dataclasses.replace(cfg, data_seed=cfg.seed)  # seeds change the init, not the batches
    runs = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        sub = "_".join(f"{n}-{v}" for n, v in zip(names, combo))
        check_architecture_options({**cfg.to_dict(), **dict(zip(names, combo))}, names)
        try:
            runs.append((str(Path(out) / sub), TrainConfig.from_dict({**cfg.to_dict(), **dict(zip(names, combo))})))
        except TypeError as exc:
            raise MmsaeError(f"bad sweep options: {exc}") from None
    return runs
