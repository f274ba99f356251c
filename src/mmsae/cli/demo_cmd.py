"""`mmsae demo`: the main job on built-in data, end to end, scored against the planted truth."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthetic data → train SAEs → evaluate → score against ground truth",
                       description="Builds the built-in synthetic paired data set, trains TopK, BatchTopK, "
                                   "Matryoshka and ReLU SAEs on it, evaluates them on held-out pairs and "
                                   "scores how many planted concepts each recovered. No network needed.")
    p.add_argument("--out", default="mmsae-demo", help="run folder (default ./mmsae-demo)")
    p.add_argument("--size", choices=["default", "small"], default="default",
                   help="default: 20,000 pairs of 256-d embeddings; small: 4,000 pairs of 64-d (for CI)")
    p.add_argument("--archs", default="topk,batchtopk,matryoshka,relu", help="comma-separated architectures")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.main import _print_json
    from mmsae.demo import DemoConfig, run_demo
    from mmsae.errors import MmsaeError

    archs = tuple(a.strip() for a in args.archs.split(",") if a.strip())
    if not archs:
        raise MmsaeError("--archs is empty")
    summary = run_demo(DemoConfig.preset(args.size, archs=archs), args.out, progress=not args.json)
    if args.json:
        _print_json(summary)
    else:
        print(summary["report"])
    return 0
