"""`mmsae eval`: reconstruction and sparsity metrics of an SAE on a store."""

from __future__ import annotations

KEYS = ("fvu", "r2", "fvu_per_sample", "r2_global", "nmae", "cosine", "l0", "l0_fraction_zero", "dead_fraction",
        "dense_fraction", "n_rows")


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an SAE on a store (every metric, per modality)",
                       description="Evaluate SAE on every row of STORE (or --split val/train, as split by the "
                                   "trainer's pair-id hash) in one streaming pass.")
    p.add_argument("sae", help="SAE folder (mmsae or SAELens format)")
    p.add_argument("store", help="store folder")
    p.add_argument("--split", choices=["all", "train", "val"], default="all", help="rows to evaluate (default all)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="held-out share defining the split (default: the SAE's training value, else 0.1)")
    p.add_argument("--modality", help="evaluate only this modality")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.main import _print_json
    from mmsae.data.store import EmbeddingStore
    from mmsae.errors import MmsaeError
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.models.io import SAELoadError, load_sae

    try:
        sae = load_sae(args.sae, device=args.device)
    except SAELoadError as exc:
        raise MmsaeError(str(exc)) from None
    store = EmbeddingStore(args.store)
    if store.dim != sae.cfg.d_in:
        raise MmsaeError(f"dimension mismatch: SAE takes {sae.cfg.d_in}-d input, store holds {store.dim}-d")
    vf = args.val_fraction
    if vf is None:
        vf = getattr(sae, "provenance", {}).get("train_config", {}).get("val_fraction", 0.1)
    res = evaluate_store(sae, store, split=args.split, val_fraction=vf, modality=args.modality, device=args.device,
                         progress=not args.json)
    if res.get("n_rows", 0) == 0:
        raise MmsaeError("no rows to evaluate for that split/modality")
    out = {k: res[k] for k in KEYS}
    out["split"] = args.split
    out["by_modality"] = {m: {k: r[k] for k in KEYS} for m, r in res["by_modality"].items()}
    if args.json:
        _print_json(out)
    else:
        print(format_table(out, args.sae, args.store))
    return 0


def format_table(res: dict, sae: str, store: str) -> str:
    cols = ["all", *res["by_modality"]]
    rows = [res, *res["by_modality"].values()]
    lines = [f"SAE {sae} on {store} (split: {res['split']})", f"{'metric':<18}" + "".join(f"{c:>12}" for c in cols)]
    for k in KEYS:
        fmt = "{:>12d}" if k == "n_rows" else "{:>12.4f}"
        lines.append(f"{k:<18}" + "".join(fmt.format(r[k]) for r in rows))
    return "\n".join(lines)
