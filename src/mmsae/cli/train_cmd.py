"""`mmsae train`: train one SAE from a store."""

from __future__ import annotations

import dataclasses

from mmsae.cli.config_flags import add_config_flags, given_options
from mmsae.train.config import TrainConfig, check_architecture_options

ALIASES = {"l1_coef": ("--l1",)}
"""Short names kept from earlier versions of the CLI."""


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an SAE from a store",
        description="Train an SAE by streaming a store; under `torchrun --nproc_per_node N -m mmsae train ...` "
        "each process reads its slice of every batch and gradients are averaged (data parallel; "
        "--batch-size is the global batch). Options come from --config (TOML/YAML/JSON, "
        "optionally under a [train] table) and are overridden by flags. The SAE folder gets "
        "config.json, model.safetensors, train_config.json, train_log.jsonl and metrics.json "
        "(held-out validation metrics; training metrics, labelled so, with --val-fraction 0 or on a "
        "store too small to hold rows out).",
    )
    p.add_argument("store", help="store folder")
    p.add_argument("--out", required=True, help="SAE folder to write")
    p.add_argument("--config", help="TOML/YAML/JSON file of training options (any of the flags below, by field name)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an SAE already in --out")
    add_config_flags(p.add_argument_group("training options (TrainConfig)"), TrainConfig, aliases=ALIASES)
    p.add_argument(
        "--sweep",
        action="append",
        metavar="OPTION=V1,V2",
        help="train one SAE per value (repeat for a grid), all in one read of the data, into "
        "OUT/OPTION-V...; e.g. --sweep k=16,32,64 --sweep seed=0,1,2 (a seed sweep keeps the "
        "batch order of the base seed)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run)


def options_from_args(args) -> TrainConfig:
    from mmsae.errors import MmsaeError
    from mmsae.train.config import read_config_file

    opts = read_config_file(args.config) if args.config else {}
    given = given_options(args, TrainConfig)
    opts.update(given)
    check_architecture_options(opts, given)
    try:
        return TrainConfig.from_dict(opts)
    except TypeError as exc:
        raise MmsaeError(f"bad training options: {exc}") from None


def _run_sweep(args, cfg: TrainConfig) -> int:
    from mmsae.cli.output import print_json
    from mmsae.train.distributed import from_env
    from mmsae.train.sweep import sweep_runs
    from mmsae.train.trainer import train_sweep

    runs = sweep_runs(args.out, cfg, args.sweep)  # the grid, in train/sweep.py for Python users too
    results = train_sweep(args.store, runs, overwrite=args.overwrite, progress=not args.json)
    ctx = from_env()
    ctx.shutdown()
    if not ctx.main:  # under torchrun, rank 0 reports
        return 0
    if args.json:
        print_json([dataclasses.asdict(r) for r in results])
        return 0
    print(f"trained {len(results)} SAEs in one read of the data ({results[0].seconds:.1f} s):")
    for r in results:
        v = r.val_metrics
        extra = (
            f"{_which(r)} FVU {v['fvu']:.4f}, L0 {v['l0']:.1f}, dead {v['dead_fraction']:.3f}" if v else "no metrics"
        )
        print(f"  {r.out_dir}: {extra}")
    for note in dict.fromkeys(n for r in results for n in r.notes):
        print(f"note: {note}")
    return 0


def _which(res) -> str:
    """How the metrics of a TrainResult are labelled in the printout."""
    return "held-out" if res.held_out else "training (not held-out)"


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError
    from mmsae.train.trainer import Trainer

    cfg = options_from_args(args)
    if args.sweep:
        if args.resume:
            raise MmsaeError("--resume resumes one run; resume the runs of a sweep one by one")
        return _run_sweep(args, cfg)
    fitted = None if args.resume else _fit_small_store(args, cfg)
    if fitted is not None:
        cfg, note = fitted
        if not args.json:
            print(f"note: {note}")
    trainer = Trainer(args.store, args.out, cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.json)
    res = trainer.run()
    trainer.dist.shutdown()
    if not trainer.dist.main:  # under torchrun, rank 0 reports
        return 0
    if args.json:
        print_json(dataclasses.asdict(res))
    else:
        v = res.val_metrics
        if v:
            print(
                f"saved {cfg.arch} SAE (F={cfg.dict_size}) to {res.out_dir} after {res.steps} steps "
                f"({res.vectors_per_second:,.0f} vectors/s); {_which(res)} FVU {v['fvu']:.4f}, L0 {v['l0']:.1f}, "
                f"dead {v['dead_fraction']:.3f}"
            )
            if "crossmodal" in v and "alignment" in v["crossmodal"]:
                bym = v["by_modality"]
                print(
                    f"  {_which(res)} FVU image {bym['image']['fvu']:.4f}, text {bym['text']['fvu']:.4f}; code-space "
                    f"alignment score {v['crossmodal']['alignment']['alignment_score']:.3f}, image→text R@1 "
                    f"{v['crossmodal']['code_retrieval']['i2t_recall@1']:.3f}"
                )
        else:
            print(f"saved {cfg.arch} SAE to {res.out_dir} after {res.steps} steps")
        for note in res.notes:
            print(f"note: {note}")
    return 0


def _fit_small_store(args, cfg: TrainConfig):
    """(cfg, note) when the batch size was left at its default and the store's training split is
    smaller than one such batch: the batch and epochs `auto_schedule` picks for it (at least 3,000
    steps), so a small store trains with its defaults instead of being refused. None otherwise."""
    from mmsae.train.config import read_config_file
    from mmsae.train.trainer import count_training, scheduled

    chosen = set(given_options(args, TrainConfig)) | set(read_config_file(args.config) if args.config else {})
    if "batch_size" in chosen or cfg.steps is not None:
        return None
    n = count_training(args.store, cfg)
    if n == 0 or n >= cfg.batch_size:
        return None  # nothing to fit (an empty split is refused by the trainer, in one line)
    epochs = cfg.epochs if "epochs" in chosen else None
    cfg, sched = scheduled(args.store, cfg, None, epochs, min_epochs=cfg.epochs)
    what = "pairs" if cfg.paired else "rows"
    return cfg, (
        f"{n} training {what} are fewer than one default batch ({TrainConfig.batch_size}): training with "
        f"{sched.describe()}; pass --batch-size to choose"
    )
