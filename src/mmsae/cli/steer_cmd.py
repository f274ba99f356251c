"""`mmsae steer`: move embeddings along a concept (or any direction) and show what they retrieve."""

from __future__ import annotations

from mmsae.cli.output import finite_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "steer",
        help="steer embeddings along a concept and show what they retrieve",
        description="Takes rows of SOURCE modality from the store. With --target equal to --source "
        "(the default), adds STRENGTH times the concept's unit decoder direction (or "
        "--direction) to each embedding, keeping its norm. With another --target, encodes "
        "the rows, adds STRENGTH to the concept's activation (or sets it, --mode set) and "
        "decodes into the target modality. Prints each row's nearest target-modality rows "
        "of the store before and after, and a linear probe's score change with --probe.",
    )
    p.add_argument("sae", help="SAE folder")
    p.add_argument("store", help="store folder (its rows are the queries and the retrieval gallery)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--concept", help="concept to steer along: its index, or its name with --names")
    what.add_argument("--direction", help=".npy or .npz (key 'weight') vector to steer along instead of a concept")
    p.add_argument(
        "--strength",
        type=finite_float,
        required=True,
        help="step along the unit direction (same modality) or added activation (cross-modal)",
    )
    p.add_argument("--source", choices=["image", "text"], default="image", help="modality of the query rows")
    p.add_argument(
        "--target", choices=["image", "text"], default=None, help="modality to decode into (default: source)"
    )
    p.add_argument("--mode", choices=["add", "set"], default="add", help="cross-modal: add to or set the activation")
    p.add_argument("--rows", help="comma-separated row ids to steer (default: the first --n rows of SOURCE)")
    p.add_argument("--n", type=positive_int, default=3, help="rows to steer when --rows is not given (default 3)")
    p.add_argument("--top", type=positive_int, default=5, help="nearest gallery rows to show (default 5)")
    p.add_argument(
        "--gallery", type=positive_int, default=50000, help="at most this many target rows to search (default 50000)"
    )
    p.add_argument("--probe", help=".npz with 'weight' [1, D] (and optional 'bias'), e.g. a LAION aesthetic head")
    p.add_argument("--names", help="names.json from `mmsae name`: concepts by name, and names in the output")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _vector(path: str, dim: int, what: str):
    import numpy as np

    from mmsae.errors import MmsaeError

    try:
        obj = np.load(path)
    except (OSError, ValueError) as exc:
        raise MmsaeError(f"{what} {path}: cannot read ({exc})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        if "weight" not in obj:
            raise MmsaeError(f"{what} {path}: expected an array named 'weight' (has {list(obj.keys())})")
        w, b = obj["weight"], float(obj["bias"].reshape(-1)[0]) if "bias" in obj else 0.0
    else:
        w, b = obj, 0.0
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape[0] != dim or not np.isfinite(w).all():
        raise MmsaeError(
            f"{what} {path}: expected {dim} finite values, got shape {np.shape(obj['weight'] if hasattr(obj, 'keys') else obj)}"
        )
    return w, b


def run(args) -> int:
    import numpy as np

    from mmsae.analysis.steering import steer_rows
    from mmsae.cli.common import concept_of, load_model, name_of, open_store_for, read_names
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError

    model = load_model(args.sae)
    store = open_store_for(model, args.store)
    names = read_names(args.names, model.cfg.dict_size)
    concept = None if args.concept is None else concept_of(args.concept, names)
    rows = None
    if args.rows:
        try:
            rows = np.array([int(r) for r in args.rows.split(",") if r.strip()])
        except ValueError:
            raise MmsaeError(f"--rows must be comma-separated integers, got {args.rows!r}") from None
    out = steer_rows(
        model,
        store,
        source=args.source,
        target=args.target or args.source,
        concept=concept,
        direction_D=_vector(args.direction, store.dim, "--direction")[0] if args.direction else None,
        direction_name=args.direction,
        strength=args.strength,
        rows=rows,
        n=args.n,
        top=args.top,
        gallery=args.gallery,
        mode=args.mode,
        probe=_vector(args.probe, store.dim, "--probe") if args.probe else None,
    )
    target, rows = out["target"], out["rows"]
    if concept is not None and names is not None:
        out["concept_name"] = names[concept].name if concept < len(names) else None
    if args.json:
        print_json(out)
        return 0
    what = f"concept {concept}{name_of(names, concept)}" if args.direction is None else f"direction {args.direction}"
    print(f"steering {len(rows)} {args.source} row(s) along {what}, strength {args.strength}, judged in {target} space")
    for item in out["results"]:
        print(f"\nrow {item['row']} ({item['source']}): {(item['text'] or '(no text)')[:80]}")
        if "probe_before" in item:
            print(f"  probe score {item['probe_before']:.3f} → {item['probe_after']:.3f}")
        for label in ("before", "after"):
            print(f"  nearest {target} rows {label}:")
            for g in item[label]:
                print(f"    {g['cosine']:.3f}  row {g['row']}: {(g['text'] or g['source'] or '')[:70]}")
    return 0
