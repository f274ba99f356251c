"""`mmsae analyze`: the linear-structure analyses (pareto, stability, modality, bridges).

Each writes `<name>.json`, `<name>.png`, `<name>.svg` and `<name>.md` into --out.
"""

from __future__ import annotations

from mmsae.analysis.pareto import ParetoConfig
from mmsae.cli.config_flags import add_config_flags, given_options
from mmsae.cli.output import nonneg_int, positive_float, positive_int

PARETO_NOT_FLAGS = ("kmeans_sizes", "val_fraction")
"""ParetoConfig fields that `analyze pareto` leaves at their defaults (no flag)."""
PARETO_NAMES = {"l1_coefs": "--l1"}
"""Flag names that are not the field's own (kept from earlier versions of the CLI)."""
PARETO_LISTS = {"levels": int, "saes": str, "baselines": str, "l1_coefs": float, "l0_coefs": float}
"""List fields, given as comma-separated text and read by `pareto_config`."""
PARETO_TYPES = {
    **dict.fromkeys(PARETO_LISTS, str),
    **dict.fromkeys(("dict_size", "batch_size", "fit_rows", "eval_rows"), positive_int),
    "epochs": positive_float,
    "lr": positive_float,
    "seed": nonneg_int,
}
"""Argparse types of the flags, where the annotation alone would accept a bad value."""

STABILITY_MIN_EPOCHS = 20.0
"""Epochs of each stability run on a large store (the old fixed default); smaller stores get more."""


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="linear-structure analyses: pareto, stability, modality, bridges",
        description="Analyses of Papadimitriou et al. (2025). Each writes JSON, PNG/SVG plots and a "
        "Markdown summary into --out.",
    )
    a = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    q = a.add_parser(
        "pareto",
        help="R² vs L0 of SAEs and PCA/ICA/NMF/k-means/dictionary learning",
        description="Fits PCA, ICA, NMF (on data shifted to be non-negative), k-means (L0 = 1) and "
        "sparse dictionary learning (OMP), and trains TopK, BatchTopK, Matryoshka and ReLU "
        "SAEs (and, with --saes, Gated and JumpReLU), over a sweep of sparsity levels; scores all on the "
        "same held-out rows.",
    )
    q.add_argument("store")
    q.add_argument("--out", required=True)
    add_config_flags(
        q.add_argument_group("Pareto options (ParetoConfig)"),
        ParetoConfig,
        skip=PARETO_NOT_FLAGS,
        names=PARETO_NAMES,
        types=PARETO_TYPES,
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_pareto)

    s = a.add_parser(
        "stability",
        help="match dictionaries of retrained SAEs (Hungarian on cosine)",
        description="Trains --seeds SAEs that differ only by seed, or --mixes SAEs that differ by "
        "the image:text ratio of their training rows (or takes --saes), matches each "
        "against the first one-to-one by cosine, and relates each concept's stability to "
        "its frequency and energy. Every run gets its own seed (--seed, --seed + 1, ...); with "
        "--mixes, as many runs again at the first mix with further seeds give the seed-only "
        "baseline the mixes are compared with. The batch size is the same for every run and, like "
        "the epochs, scales with the store unless given.",
    )
    s.add_argument("store")
    s.add_argument("--out", required=True)
    s.add_argument("--saes", help="comma-separated SAE folders to compare instead of training (e.g. other data mixes)")
    s.add_argument("--seeds", type=positive_int, default=3, help="SAEs to train, seeds SEED..SEED+N-1 (default 3)")
    s.add_argument(
        "--mixes",
        help="train one SAE per image:text mix instead of per seed, e.g. 1:1,1:3,3:1 (mix i gets seed "
        "SEED+i; plus a seed-only baseline at the first mix)",
    )
    s.add_argument("--seed", type=nonneg_int, default=0, help="seed of the first run (default 0)")
    s.add_argument("--arch", default="topk")
    s.add_argument("--dict-size", type=positive_int, default=1024)
    s.add_argument("--k", type=positive_int, default=8)
    s.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="training passes (default auto: 20, or more on a small store so that every run gets at least 3,000 steps)",
    )
    s.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="rows per step, the same for every run (default auto: from the smallest run's training rows, 128 to 1024)",
    )
    s.add_argument("--lr", type=positive_float, default=3e-3)
    s.add_argument("--modality", help="train on one modality only")
    s.add_argument("--absolute", action="store_true", help="match on |cosine| (a sign flip is the same concept)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_stability)

    m = a.add_parser("modality", help="modality score per concept, buckets, probe and per-concept classifiers")
    m.add_argument("sae")
    m.add_argument("store")
    m.add_argument("--out", required=True)
    m.add_argument(
        "--max-rows", type=positive_int, default=20000, help="rows (both modalities) for the probe (default 20000)"
    )
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_modality)

    b = a.add_parser("bridges", help="Bridge Score: concepts that co-fire across pairs and point the same way")
    b.add_argument("sae")
    b.add_argument("store")
    b.add_argument("--out", required=True)
    b.add_argument("--top", type=positive_int, default=50, help="bridges to report (default 50)")
    b.add_argument("--split", choices=["all", "train", "val"], default="all")
    b.add_argument("--max-pairs", type=positive_int, default=None, help="use at most this many pairs (default all)")
    b.add_argument("--shuffles", type=positive_int, default=5, help="caption shuffles for the null model (default 5)")
    b.add_argument(
        "--names", help="names.json from `mmsae name`: concept names beside the ids (default: planted names, if any)"
    )
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=run_bridges)


def _list(s: str, typ=str) -> tuple:
    from mmsae.errors import MmsaeError

    try:
        return tuple(typ(v.strip()) for v in s.split(",") if v.strip())
    except ValueError:
        raise MmsaeError(f"expected a comma-separated list, got {s!r}") from None


def _finish(args, res: dict, name: str) -> int:
    from mmsae.cli.output import print_json

    if args.json:
        print_json({k: v for k, v in res.items() if k not in ("per_concept", "mass")})
    else:
        from pathlib import Path

        print((Path(args.out) / f"{name}.md").read_text())
        print(f"written: {args.out}/{name}.json, .png, .svg, .md")
    return 0


def pareto_config(args):
    """The ParetoConfig of the flags given; a list flag is read here, so a bad one is refused with
    the command's own error."""
    from mmsae.analysis.pareto import ParetoConfig

    opts = given_options(args, ParetoConfig, skip=PARETO_NOT_FLAGS)
    for name, typ in PARETO_LISTS.items():
        if name in opts:
            opts[name] = _list(opts[name], typ)
    return ParetoConfig(**opts)


def run_pareto(args) -> int:
    from mmsae.analysis.pareto import run_pareto as run

    cfg = pareto_config(args)
    return _finish(args, run(args.store, args.out, cfg, progress=not args.json), "pareto")


def stability_runs(args) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(runs, seed-only baseline runs) as (name, TrainConfig fields); every run its own seed: run i
    gets SEED + i. With --mixes, the baseline repeats the first mix with the next seeds, as many runs
    as there are other mixes; with --seeds the runs are themselves the seed comparison."""
    from mmsae.errors import MmsaeError

    base = args.seed
    if args.mixes:
        mixes = _list(args.mixes)
        if len(mixes) < 2:
            raise MmsaeError(f"--mixes needs at least two mixes to compare, got {args.mixes!r}")
        if len(set(mixes)) < len(mixes):
            raise MmsaeError(f"--mixes lists a mix twice: {args.mixes!r}")
        runs = [(f"mix{m.replace(':', '-')}-seed{base + i}", {"mix": m, "seed": base + i}) for i, m in enumerate(mixes)]
        ref = mixes[0]
        seeds = range(base + len(mixes), base + 2 * len(mixes) - 1)
        return runs, [(f"mix{ref.replace(':', '-')}-seed{s}", {"mix": ref, "seed": s}) for s in seeds]
    if args.seeds < 2:
        raise MmsaeError(f"--seeds must be at least 2, got {args.seeds}")
    return [(f"seed{s}", {"seed": s}) for s in range(base, base + args.seeds)], []


def run_stability(args) -> int:
    from mmsae.analysis.stability import retrain_for_stability, stability_of_saes
    from mmsae.data.store import EmbeddingStore
    from mmsae.train.config import TrainConfig
    from mmsae.train.schedule import auto_schedule
    from mmsae.train.trainer import count_training, scheduled

    store = EmbeddingStore(args.store)
    baseline: list[str] = []
    if args.saes:
        folders = list(_list(args.saes))
    else:
        runs, base_runs = stability_runs(args)
        configs = [
            (
                name,
                TrainConfig(
                    arch=args.arch,
                    dict_size=args.dict_size,
                    k=args.k,
                    lr=args.lr,
                    modality=args.modality,
                    device="cpu",
                    checkpoint_every=0,
                    **extra,
                ),
            )
            for name, extra in [*runs, *base_runs]
        ]
        # one batch size for every run (from the smallest training split), so runs differ only in
        # seed and data; the epochs then give each run at least MIN_STEPS steps
        smallest = max(1, min(count_training(store, c) for _, c in configs))  # 0 rows: `scheduled` says so
        batch = args.batch_size or auto_schedule(smallest, min_epochs=STABILITY_MIN_EPOCHS).batch_size
        configs = [(n, scheduled(store, c, batch, args.epochs, STABILITY_MIN_EPOCHS)[0]) for n, c in configs]
        trained = retrain_for_stability(store, args.out, configs, progress=not args.json)
        folders, baseline = trained[: len(runs)], trained[len(runs) :]
    res = stability_of_saes(
        store, folders, out=args.out, modality=args.modality, absolute=args.absolute, baseline=baseline
    )
    return _finish(args, res, "stability")


def run_modality(args) -> int:
    from mmsae.analysis.modality import analyze_modality
    from mmsae.cli.common import load_model, open_store_for

    model = load_model(args.sae)
    store = open_store_for(model, args.store)
    return _finish(args, analyze_modality(model, store, out=args.out, max_rows=args.max_rows), "modality")


def bridge_names(path: str | None, model, store) -> list[str | None] | None:
    """Concept names by id: from a names.json (`--names`), else the planted names of a synthetic store."""
    from mmsae.analysis.truth import latent_names
    from mmsae.cli.common import read_names  # the loader of every command's --names

    named = read_names(path, model.cfg.dict_size)
    return latent_names(model, store) if named is None else [c.name for c in named]


def run_bridges(args) -> int:
    from mmsae.analysis.bridges import analyze_bridges
    from mmsae.cli.common import load_model, open_store_for, require_pairs

    model = load_model(args.sae)
    store = open_store_for(model, args.store)
    require_pairs(store, "the Bridge Score")
    names = bridge_names(args.names, model, store)
    res = analyze_bridges(
        model,
        store,
        out=args.out,
        top=args.top,
        split=args.split,
        max_pairs=args.max_pairs,
        shuffles=args.shuffles,
        names=names,
    )
    return _finish(args, res, "bridges")
