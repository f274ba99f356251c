"""`mmsae demo`: the main job on built-in data, end to end, scored against the planted truth."""

from __future__ import annotations

from mmsae.cli.config_flags import add_config_flags, field_default, given_options
from mmsae.pipelines.common import DemoConfig

NOT_FLAGS = ("synth", "dict_size", "k", "l1_coef", "epochs", "batch_size", "lr", "images")
"""DemoConfig fields with no flag of their own: the sizes come from the --size preset, and every
synthetic demo draws its pictures."""
SWITCHES = {
    "multimodal": ("--no-multimodal", False),
    "stability_seeds": ("--no-stability", 0),
    "pareto": ("--no-pareto", False),
}
"""DemoConfig fields whose flag only turns the step off."""


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="built-in data → SAEs → analyses → report → explorer, scored against ground truth",
        description="By default draws the scene world (pictures of coloured shapes with captions, "
        "docs/world.md), embeds it with the small CLIP trained on it that ships with mmsae, "
        "trains TopK, BatchTopK, Matryoshka and ReLU SAEs and a MultiModalSAE on the embeddings, "
        "evaluates them on held-out pairs, names the TopK SAE's concepts from the world's words, finds "
        "their top examples, runs the modality, Bridge Score, Pareto (vs PCA/NMF/k-means) and "
        "stability analyses, scores probing, naming, modality, hallucination and steering against "
        "the attributes of held-out scenes, writes RUN/report.html and starts the explorer. "
        "--data planted runs the same on synthetic embeddings built from planted directions. "
        "No network needed.",
    )
    p.add_argument(
        "--out", default="mmsae-demo", help="run folder (default ./mmsae-demo); a previous demo there is replaced"
    )
    p.add_argument(
        "--size",
        choices=["default", "small"],
        default="default",
        help="world: 8,000 scenes (small: 2,000); planted: 20,000 pairs of 256-d embeddings (small: 4,000 "
        "pairs of 64-d); small is for CI",
    )
    p.add_argument(
        "--data",
        choices=["world", "planted", "synthetic", "coco-captions"],
        default="world",
        help="world (default): the scene world embedded by its learned CLIP; planted (or its old name "
        "synthetic): sparse sums of planted directions with pictures; coco-captions: real COCO "
        "captions embedded with MiniLM (text only)",
    )
    p.add_argument(
        "--world-model",
        help="with --data world: a folder written by `mmsae world train` (default: the model shipped "
        "in mmsae/world/pretrained)",
    )
    p.add_argument(
        "--captions",
        help="with --data coco-captions: a COCO captions JSON (default: "
        "coco-val2017-captions/captions_val2017.json under $MMSAE_SHARED_DATA or ../shared/data, else a "
        "download from cocodataset.org into ~/.cache/mmsae)",
    )
    p.add_argument(
        "--vocab",
        help="with --data coco-captions: vocabulary for naming (default: SpLiCE's mscoco.txt "
        "under $MMSAE_SHARED_DATA or ../shared/data in splice/vocab, else the captions' own frequent words)",
    )
    add_config_flags(
        p.add_argument_group("demo options (DemoConfig)"),
        DemoConfig,
        skip=NOT_FLAGS,
        switches=SWITCHES,
    )
    p.add_argument("--no-serve", action="store_true", help="stop after writing the report; do not start the explorer")
    p.add_argument("--port", type=int, default=8765, help="explorer port (default 8765)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (implies --no-serve)")
    p.set_defaults(func=run)


def demo_options(args) -> dict:
    """The DemoConfig fields the flags set, with --archs always (the text demo needs it too)."""
    from mmsae.errors import MmsaeError

    opts = given_options(args, DemoConfig, skip=NOT_FLAGS)
    opts.setdefault("archs", field_default(DemoConfig.__dataclass_fields__["archs"]))
    if not opts["archs"]:
        raise MmsaeError("--archs is empty")
    return opts


def run(args) -> int:
    import sys

    from mmsae.cli.output import print_json
    from mmsae.pipelines.demo import run_demo

    opts = demo_options(args)
    serve = not (args.no_serve or args.json)
    if serve:
        from mmsae.explorer.serve import _require_server, check_port

        _require_server()
        check_port("127.0.0.1", args.port)  # fail now, not after ten minutes of training
    log = None if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    if args.world_model and args.data != "world":
        from mmsae.errors import MmsaeError

        raise MmsaeError("--world-model applies to --data world only")
    if args.data == "coco-captions":
        from mmsae.pipelines.demo_text import run_text_demo

        summary = run_text_demo(
            args.out,
            captions=args.captions,
            vocab=args.vocab,
            size=args.size,
            archs=opts["archs"],
            stability="stability_seeds" not in opts,
            progress=not args.json,
            log=log,
        )
    elif args.data == "world":
        import dataclasses

        from mmsae.pipelines.demo_world import WorldData, run_world_demo, world_demo_config

        data = WorldData.preset(args.size)
        if args.world_model:
            data = dataclasses.replace(data, model=args.world_model)
        summary = run_world_demo(world_demo_config(args.size, **opts), data, args.out, progress=not args.json, log=log)
    else:
        cfg = DemoConfig.preset(args.size, **opts)
        summary = run_demo(cfg, args.out, progress=not args.json, log=log)
    if args.json:
        print_json(summary)
        return 0
    print(summary["report"])
    if serve:
        from mmsae.explorer.index import load_explorer
        from mmsae.explorer.serve import serve as start
        from mmsae.runs import find_run

        start(load_explorer(find_run(args.out)), port=args.port)
    return 0
