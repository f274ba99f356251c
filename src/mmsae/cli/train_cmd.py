"""`mmsae train`: train one SAE from a store."""

from __future__ import annotations

import dataclasses

from mmsae.train.config import TrainConfig

# flag → (type, help); every TrainConfig field is settable, these have short, documented flags
_FLAGS = {
    "arch": (str, "relu, topk, batchtopk or matryoshka; on image/text pairs: vlsae or multimodal (default topk)"),
    "dict_size": (int, "number of latents F (default 4096)"),
    "k": (int, "active latents per row, TopK family (default 32)"),
    "l1": (float, "L1 coefficient for --arch relu (default 5.0)"),
    "matryoshka_ks": (str, "comma-separated nested k values for matryoshka (default k/4,k/2,k, none below 4)"),
    "lambda_align": (float, "multimodal: weight of the pair alignment term ||z_txt - z_img||^2 (default 0.3)"),
    "lambda_image": (float, "multimodal: weight of the image reconstruction loss; text has 1 (default 1.0)"),
    "sparsity": (str, "multimodal: topk or l1 (default topk)"),
    "steps": (int, "optimizer steps (default: --epochs passes over the training split)"),
    "epochs": (float, "passes over the training split when --steps is not given (default 10)"),
    "batch_size": (int, "rows per step (default 4096)"),
    "lr": (float, "peak learning rate (default 1e-3)"),
    "warmup_frac": (float, "share of steps for LR warm-up (default 0.05)"),
    "decay": (str, "cosine, linear or constant (default cosine)"),
    "grad_clip": (float, "global gradient-norm clip, 0 disables (default 1.0)"),
    "normalize": (str, "auto, center_scale, scale or none; folded into the saved weights (default auto: "
                       "center_scale, per modality for multimodal, none for vlsae)"),
    "b_dec_init": (str, "geometric_median, mean or zeros (default geometric_median)"),
    "aux_k": (int, "dead latents in the AuxK loss (default 256)"),
    "aux_coef": (float, "AuxK weight (default 1/32)"),
    "dead_after": (int, "rows without firing before a latent counts as dead (default: one epoch)"),
    "seed": (int, "seed for initialisation and data order (default 0)"),
    "val_fraction": (float, "share of pair ids held out for validation (default 0.1)"),
    "modality": (str, "train on this modality only (default: all rows)"),
    "mix": (str, "image:text ratio of the training rows, e.g. 1:3 (default: the store's own mix)"),
    "checkpoint_every": (int, "steps between resumable checkpoints, 0 = never (default 500)"),
    "log_every": (int, "steps between train_log.jsonl lines (default 10)"),
    "shuffle_buffer": (int, "rows in the shuffle buffer (default 65536)"),
    "device": (str, "cpu, cuda, cuda:N or auto (default auto)"),
    "select_dtype": (str, "topk/matryoshka: float32 or bfloat16 for the GEMM that chooses the active latents; "
                          "values and gradients stay float32 (default float32)"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train an SAE from a store",
        description="Train an SAE by streaming a store; under `torchrun --nproc_per_node N -m mmsae train ...` "
                    "each process reads its slice of every batch and gradients are averaged (data parallel; "
                    "--batch-size is the global batch). Options come from --config (TOML/YAML/JSON, "
                    "optionally under a [train] table) and are overridden by flags. The SAE folder gets "
                    "config.json, model.safetensors, train_config.json, train_log.jsonl and metrics.json "
                    "(held-out validation metrics).")
    p.add_argument("store", help="store folder")
    p.add_argument("--out", required=True, help="SAE folder to write")
    for name, (typ, hlp) in _FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, help=hlp)
    p.add_argument("--config", help="TOML/YAML/JSON file of training options")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an SAE already in --out")
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard")
    p.add_argument("--vlsae-center", action="store_true",
                   help="vlsae: subtract each modality's mean before the cosine encoder (not in the official code)")
    p.add_argument("--sweep", action="append", metavar="OPTION=V1,V2",
                   help="train one SAE per value (repeat for a grid), all in one read of the data, into "
                        "OUT/OPTION-V...; e.g. --sweep k=16,32,64 --sweep seed=0,1,2 (a seed sweep keeps the "
                        "batch order of the base seed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run)


def options_from_args(args) -> TrainConfig:
    from mmsae.errors import MmsaeError
    from mmsae.train.config import read_config_file

    opts = read_config_file(args.config) if args.config else {}
    for name in _FLAGS:
        v = getattr(args, name)
        if v is None:
            continue
        if name == "l1":
            opts["l1_coef"] = v
        elif name == "matryoshka_ks":
            try:
                opts[name] = tuple(int(s) for s in v.split(",") if s.strip())
            except ValueError:
                raise MmsaeError(f"--matryoshka-ks must be comma-separated integers, got {v!r}") from None
        else:
            opts[name] = v
    if args.tensorboard:
        opts["tensorboard"] = True
    if args.vlsae_center:
        opts["vlsae_center"] = True
    arch = opts.get("arch", "topk")
    l1_sparsity = arch == "relu" or (arch == "multimodal" and opts.get("sparsity") == "l1")
    if l1_sparsity and args.k is not None:
        raise MmsaeError("--k does not apply to L1 sparsity; use --l1 to set sparsity")
    if not l1_sparsity and args.l1 is not None:
        raise MmsaeError(f"--l1 applies to --arch relu and --arch multimodal --sparsity l1; --arch {arch} uses --k")
    multimodal_only = [f for f in ("lambda_align", "lambda_image", "sparsity") if getattr(args, f) is not None]
    if multimodal_only and arch != "multimodal":
        raise MmsaeError(f"--{multimodal_only[0].replace('_', '-')} applies to --arch multimodal only")
    if args.vlsae_center and arch != "vlsae":
        raise MmsaeError("--vlsae-center applies to --arch vlsae only")
    try:
        return TrainConfig.from_dict(opts)
    except TypeError as exc:
        raise MmsaeError(f"bad training options: {exc}") from None


def sweep_runs(out: str, cfg: TrainConfig, specs: list[str]) -> list[tuple[str, TrainConfig]]:
    """The grid of `--sweep OPTION=V1,V2` flags: one (folder, config) per combination."""
    import itertools
    from pathlib import Path

    from mmsae.errors import MmsaeError

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
        try:
            runs.append((str(Path(out) / sub), TrainConfig.from_dict({**cfg.to_dict(), **dict(zip(names, combo))})))
        except TypeError as exc:
            raise MmsaeError(f"bad sweep options: {exc}") from None
    return runs


def _run_sweep(args, cfg: TrainConfig) -> int:
    from mmsae.cli.output import print_json
    from mmsae.train.distributed import from_env
    from mmsae.train.trainer import train_sweep

    runs = sweep_runs(args.out, cfg, args.sweep)
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
        extra = f"held-out FVU {v['fvu']:.4f}, L0 {v['l0']:.1f}, dead {v['dead_fraction']:.3f}" if v else ""
        print(f"  {r.out_dir}: {extra}")
    return 0


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError
    from mmsae.train.trainer import Trainer

    cfg = options_from_args(args)
    if args.sweep:
        if args.resume:
            raise MmsaeError("--resume resumes one run; resume the runs of a sweep one by one")
        return _run_sweep(args, cfg)
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
            print(f"saved {cfg.arch} SAE (F={cfg.dict_size}) to {res.out_dir} after {res.steps} steps "
                  f"({res.vectors_per_second:,.0f} vectors/s); held-out FVU {v['fvu']:.4f}, L0 {v['l0']:.1f}, "
                  f"dead {v['dead_fraction']:.3f}")
            if "crossmodal" in v and "alignment" in v["crossmodal"]:
                bym = v["by_modality"]
                print(f"  held-out FVU image {bym['image']['fvu']:.4f}, text {bym['text']['fvu']:.4f}; code-space "
                      f"alignment score {v['crossmodal']['alignment']['alignment_score']:.3f}, image→text R@1 "
                      f"{v['crossmodal']['code_retrieval']['i2t_recall@1']:.3f}")
        else:
            print(f"saved {cfg.arch} SAE to {res.out_dir} after {res.steps} steps")
    return 0
