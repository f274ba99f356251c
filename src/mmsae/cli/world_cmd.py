"""`mmsae world`: the scene world with ground truth (docs/world.md), and the small CLIP trained on it.

- `world make`: write a world folder (pictures, metadata.csv, world.json) for `mmsae embed`;
- `world train`: train the world's CLIP and save it as a transformers folder (`--model hf:DIR`);
- `world eval`: measure a trained folder on held-out scenes.
"""

from __future__ import annotations

from mmsae.cli.output import nonneg_int, positive_float, positive_int
from mmsae.train.clip import ClipTrainConfig


def register(sub) -> None:
    p = sub.add_parser(
        "world",
        help="the scene world with ground truth, and a small CLIP trained on it",
        description="Pictures of coloured shapes with captions whose concepts are known exactly "
        "(docs/world.md): write a world folder, or train and measure the small CLIP-architecture "
        "model the project uses instead of downloaded weights.",
    )
    w = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)

    m = w.add_parser(
        "make",
        help="write a world folder: images/, metadata.csv, world.json",
        description="Write N scenes' pictures, a caption table `mmsae embed OUT/metadata.csv` reads, and "
        "the ground truth (world.json).",
    )
    m.add_argument("--out", required=True, help="folder to write")
    m.add_argument("--scenes", type=positive_int, required=True, help="number of scenes")
    m.add_argument("--seed", type=nonneg_int, default=0, help="(default 0)")
    m.add_argument("--image-size", type=positive_int, default=64, help="picture size in pixels, ≥ 24 (default 64)")
    m.add_argument("--captions-per-scene", type=positive_int, default=2, help="(default 2)")
    m.add_argument("--overwrite", action="store_true", help="replace a world already in --out")
    m.add_argument("--json", action="store_true", help="print a JSON summary")
    m.set_defaults(func=run_make)

    d = ClipTrainConfig()
    t = w.add_parser(
        "train",
        help="train the world's CLIP and save it as a transformers folder",
        description="Train a small CLIPModel (ViT on 64-pixel pictures, word-level tokenizer over the "
        "world's words) contrastively on scenes drawn in memory, save it with save_pretrained "
        "(model, tokenizer, image processor: `mmsae embed --model hf:OUT` uses it) and measure it on "
        "held-out scenes of seed SEED + 1. The same seed gives the same weights on the same machine "
        "(GPU kernels may round differently from run to run).",
    )
    t.add_argument("--out", required=True, help="folder to write")
    t.add_argument("--scenes", type=positive_int, default=d.scenes, help=f"training scenes (default {d.scenes})")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"(default {d.epochs})")
    t.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"(default {d.batch_size})")
    t.add_argument("--lr", type=positive_float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    t.add_argument("--seed", type=nonneg_int, default=d.seed, help=f"(default {d.seed})")
    t.add_argument(
        "--twins",
        type=float,
        default=d.twins,
        help="share of each batch that are copies of its other scenes with one shape, position, size or "
        "colour changed: hard negatives; half of --scenes are then such copies, so an epoch has fewer "
        f"steps (0 to 0.5; default {d.twins})",
    )
    t.add_argument(
        "--text-lr-scale",
        type=positive_float,
        default=d.text_lr_scale,
        help=f"the text tower's learning rate as a multiple of --lr (default {d.text_lr_scale})",
    )
    t.add_argument(
        "--caption-variants",
        type=positive_int,
        default=d.caption_variants,
        help=f"captions drawn per scene; epoch e uses caption e mod this (default {d.caption_variants})",
    )
    length.add_argument(
        "--minutes",
        type=positive_float,
        help="train for about this long instead of --epochs: the epochs whose training loop fits, from the time "
        "of a few steps (drawing the scenes, saving and measuring come on top; the saved record gives the "
        "epochs chosen, for --epochs to reproduce the run)",
    )
    t.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:N or auto; on CUDA matrix products run in TF32 (default cpu)"
    )
    t.add_argument(
        "--eval-scenes", type=nonneg_int, default=1000, help="held-out scenes to measure on; 0: do not (default 1000)"
    )
    t.add_argument("--overwrite", action="store_true", help="replace a model this command wrote in --out")
    t.add_argument("--json", action="store_true", help="print a JSON summary instead of progress and lines")
    t.set_defaults(func=run_train)

    e = w.add_parser(
        "eval",
        help="measure a trained folder on held-out scenes",
        description="Retrieval R@1 both ways (one caption per scene), zero-shot colour and shape accuracy "
        "on the one-object scenes, and the modality gap (distance of the mean embeddings, linear "
        "separability of the two modalities).",
    )
    e.add_argument("model", help="folder written by `mmsae world train` (or another CLIP folder)")
    e.add_argument("--scenes", type=positive_int, default=1000, help="held-out scenes (default 1000)")
    e.add_argument("--seed", type=nonneg_int, help="seed of the held-out scenes (default: the training seed + 1)")
    e.add_argument(
        "--probes",
        action="store_true",
        help="also read shape, colour, size and position back from the embeddings of one-object scenes "
        "(logistic regressions), and what an oracle knowing only some attributes reaches in retrieval",
    )
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run_eval)


def run_make(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.world import write_world

    world = write_world(  # WorldConfig refuses a bad size or count in one line
        args.out,
        args.scenes,
        args.seed,
        image_size=args.image_size,
        captions_per_scene=args.captions_per_scene,
        overwrite=args.overwrite,
        progress=not args.json,
    )
    summary = {"out": args.out, "scenes": len(world.scenes), "captions": len(world.captions), "seed": args.seed}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['scenes']:,} scenes and {summary['captions']:,} captions to {args.out}")
    return 0


def run_train(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.train.clip import train_world_clip

    cfg = ClipTrainConfig(
        scenes=args.scenes,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        twins=args.twins,
        text_lr_scale=args.text_lr_scale,
        caption_variants=args.caption_variants,
    )
    res = train_world_clip(
        args.out,
        cfg,
        measure=args.eval_scenes > 0,
        eval_scenes=args.eval_scenes,
        overwrite=args.overwrite,
        progress=not args.json,
        device=args.device,
        minutes=args.minutes,
    )
    if args.json:
        print_json(res.to_json())
        return 0
    print(
        f"trained {res.steps:,} steps ({res.epochs} epochs) in {res.seconds / 60:.1f} min (loss {res.first_loss:.3f} → {res.last_loss:.3f}); "
        f"saved to {args.out}"
    )
    if res.measurements is not None:
        print(res.measurements.describe())
    return 0


def run_eval(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.train.clip import held_out_seed, load_world_clip, measure_world_clip

    loaded = load_world_clip(args.model)  # once, for the measurements and the probes
    seed = held_out_seed(args.model) if args.seed is None else args.seed
    res = measure_world_clip(*loaded, n_scenes=args.scenes, seed=seed)
    summary = res.to_json()
    if args.probes:
        summary["probes"], summary["oracle_recall"] = _probes(loaded, res)
    if args.json:
        print_json(summary)
        return 0
    print(res.describe())
    if args.probes:
        print("linear probes on one-object scenes (held-out accuracy; image / text):")
        for attr, acc in summary["probes"].items():
            print(f"  {attr:<9} {acc['image']:.3f} / " + (f"{acc['text']:.3f}" if "text" in acc else "–"))
        print(f"oracle image→text R@1 among the same {res.n_scenes:,} scenes, knowing only:")
        for name, r in summary["oracle_recall"].items():
            print(f"  {name:<40} {r:.3f}")
    return 0


ORACLE_SETS = {
    "colour, size, count, background": ("colour", "size", "count", "background"),
    "those and position": ("colour", "size", "count", "background", "position"),
    "those and shape": ("colour", "size", "count", "background", "shape"),
    "those, position and shape": ("colour", "size", "count", "background", "position", "shape"),
}


def _probes(loaded: tuple, res) -> tuple[dict, dict]:
    """Attribute probes of a loaded (model, tokenizer, processor), and the oracle recalls on the
    scenes `res` was measured on."""
    from mmsae.train.clip import attribute_probes, oracle_recall
    from mmsae.world import caption_scene, sample_scenes

    probes = attribute_probes(*loaded)
    scenes = sample_scenes(res.n_scenes, res.seed)
    captions = [caption_scene(s, res.seed, 1)[0] for s in scenes]
    return probes, {name: oracle_recall(scenes, captions, attrs) for name, attrs in ORACLE_SETS.items()}
