"""`mmsae compare`: the multimodal comparison table (independent, pooled, MultiModalSAE ± alignment, VL-SAE)."""

from __future__ import annotations

from mmsae.cli.output import nonneg_float, nonneg_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="train and compare multimodal SAEs against independent and pooled SAEs",
        description="Trains, on one paired store and with the same F and k: two independent "
        "TopK SAEs (one per modality), one TopK SAE on pooled images and texts, the "
        "MultiModalSAE without and with its alignment term, and VL-SAE (the batch size and epochs "
        "scale with the store unless given, so a small store still gets enough steps); then scores each "
        "on held-out pairs (code-space alignment score, pair similarity, per-modality FVU, "
        "code-space recall@1; on synthetic stores also shared-concept recovery and "
        "hallucination detection). Writes OUT/comparison.{json,md} and the SAE folders.",
    )
    p.add_argument("store", help="paired store folder (e.g. from `mmsae synth`)")
    p.add_argument("--out", required=True, help="folder for the SAEs and the table")
    p.add_argument("--dict-size", type=positive_int, default=1024, help="latents F (default 1024)")
    p.add_argument("--k", type=positive_int, default=8, help="active latents per row (default 8)")
    p.add_argument("--vlsae-k", type=positive_int, default=None, help="k of VL-SAE (default k + 4)")
    p.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="passes over each model's training rows or pairs (default auto: 20, or more on a small store so "
        "that every model gets at least 3,000 steps)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="rows or pairs per step (default auto: from each model's training rows, 128 to 1024; "
        "1024 from 153,600 rows up)",
    )
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument(
        "--lambda-align", type=nonneg_float, default=0.3, help="alignment weight of the aligned model (default 0.3)"
    )
    p.add_argument(
        "--models",
        default=",".join(("independent", "pooled", "multimodal-noalign", "multimodal", "vlsae")),
        help="comma-separated rows of the table",
    )
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bars)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError
    from mmsae.pipelines.compare import CompareConfig, compare_models

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise MmsaeError("--models is empty")
    cfg = CompareConfig(
        dict_size=args.dict_size,
        k=args.k,
        vlsae_k=args.vlsae_k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lambda_align=args.lambda_align,
        seed=args.seed,
        models=models,
    )
    res = compare_models(args.store, args.out, cfg, progress=not args.json)
    if args.json:
        print_json(res)
    else:
        print(res["table"])
        print(f"\nwritten to {args.out}/comparison.md and comparison.json")
    return 0
