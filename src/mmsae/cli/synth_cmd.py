"""`mmsae synth`: write the built-in synthetic paired data set with its ground truth."""

from __future__ import annotations

import dataclasses

from mmsae.data.synthetic import SynthConfig


def register(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="write synthetic paired embeddings with planted concepts",
        description="Write synthetic image/text embeddings built from a known dictionary of "
        "shared, image-only and text-only concepts, plus the ground truth (STORE/ground_truth/).",
    )
    p.add_argument("--out", required=True, help="store folder to create")
    d = SynthConfig()
    for f in dataclasses.fields(SynthConfig):
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(d, f.name)),
            default=getattr(d, f.name),
            help=f"(default {getattr(d, f.name)})",
        )
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.data.importers import store_summary
    from mmsae.data.synthetic import write_synthetic
    from mmsae.errors import MmsaeError

    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig)}
    try:
        cfg = SynthConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MmsaeError(str(exc)) from None
    store = write_synthetic(args.out, cfg, progress=not args.json, dtype=args.dtype)
    summary = store_summary(store)
    summary["concepts"] = {"shared": cfg.n_shared, "image": cfg.n_image, "text": cfg.n_text}
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {summary['rows']} rows ({summary['counts']}) of dim {summary['dim']} to {args.out}; "
            f"{cfg.n_concepts} planted concepts in {args.out}/ground_truth"
        )
    return 0
