"""`mmsae embed`: images and captions -> a store of VLM embeddings (resumable; torchrun-aware)."""

from __future__ import annotations

import os
import sys

from mmsae.backends.tokens import TOKEN_MODES
from mmsae.cli.output import positive_int

EPILOG = """\
inputs (told apart by the path, or --layout):
  FOLDER            every image below it (png jpg jpeg webp gif bmp tif tiff), one pair id each
  FILE.csv|.tsv     columns image_path (or image, file_name, path) and caption (or text); many
                    rows per image keep one pair id; captions may be joined with ' || '
  FILE.jsonl        the same fields, one JSON object a line; "caption" may be a list
  FILE.json         COCO captions (images[].id/file_name, annotations[].image_id/caption); the
                    pair id is the COCO image id; images resolve against --image-root
  FILE.txt          captions, one a line (text only)

models:
  open_clip:ARCH    open_clip architecture, with --weights TAG (e.g. openai), a checkpoint file,
                    a folder (open_clip_config.json + weights) or none (random weights)
  hf:NAME_OR_DIR    transformers CLIP, SigLIP, SigLIP2 or AIMv2: a hub name or a local folder
  minilm            all-MiniLM-L6-v2, text only (not a vision-language model)

examples:
  mmsae embed coco/annotations/captions_val2017.json --image-root coco/val2017 \\
      --model open_clip:ViT-B-32 --weights openai --device cuda --out stores/coco-vitb32
  mmsae embed photos/ --model hf:google/siglip-base-patch16-224 --out stores/photos
  torchrun --standalone --nproc_per_node 4 -m mmsae embed captions.csv --model hf:openai/clip-vit-base-patch32 --out s/

A killed run continues where it stopped when the same command is run again. Unreadable images
are skipped and listed in OUT/embed-report.json.
"""


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "embed",
        help="embed images and captions with a vision-language model into a store",
        description="Embed an image folder, a CSV/JSONL of image_path,caption, a COCO captions JSON or a "
        "text file of captions with open_clip, transformers or MiniLM, into a store "
        "(created, or appended to). Under torchrun each rank embeds its part; rank 0 merges.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="image folder, .csv/.tsv/.jsonl table, COCO .json or .txt of captions")
    p.add_argument("--out", required=True, help="store folder (created, or appended to)")
    p.add_argument("--model", required=True, help="open_clip:ARCH, hf:NAME_OR_DIR or minilm (see below)")
    p.add_argument("--weights", help="open_clip: pretrained tag, checkpoint file, folder, or none (random)")
    p.add_argument("--image-root", help="folder relative image paths resolve against (default: the input's folder)")
    p.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "folder", "table", "coco", "text"],
        help="input layout (default: from the path)",
    )
    p.add_argument(
        "--modality",
        choices=["both", "image", "text"],
        default="both",
        help="embed only the images or only the captions (default both)",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto; under torchrun cuda:LOCAL_RANK)"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="autocast on a GPU (default auto: fp16 on CUDA, fp32 on CPU)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default 64)")
    p.add_argument("--text-batch-size", type=positive_int, default=256, help="captions per batch (default 256)")
    p.add_argument(
        "--workers",
        type=int,
        default=-1,
        help="image-decoding worker processes (default: one per core, up to 8; 0 decodes in the main process)",
    )
    p.add_argument(
        "--layer",
        type=int,
        help="read a tower's hidden states after this layer instead of the pooled embeddings: one row per "
        "token, in the tower's width (0: the token embeddings; negative numbers count from the end); the "
        "vision tower of transformers and open_clip models, or a transformers text tower on captions",
    )
    p.add_argument(
        "--tokens",
        choices=list(TOKEN_MODES),
        help="with --layer (--tokens alone reads the last layer): on pictures cls, every patch (default), the "
        "mean of the patches, or all (cls and patches); on captions (--modality text, or an input of captions "
        "alone) all (every token, the default) or mean",
    )
    p.add_argument(
        "--patches-per-image",
        type=positive_int,
        help="keep this many patch tokens per picture, drawn at random (the same on a resumed run)",
    )
    p.add_argument("--no-normalize", action="store_true", help="store raw embeddings (default: L2-normalised)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default=None,
        help="on-disk dtype (default: the store's own; for a new store float32, float16 with --layer/--tokens)",
    )
    p.add_argument("--shard-rows", type=positive_int, default=16384, help="rows per committed shard (default 16384)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from mmsae.backends.embed import EmbedConfig, embed
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.cli.output import print_json
    from mmsae.data.inputs import read_inputs
    from mmsae.errors import MmsaeError

    for flag in ("batch_size", "text_batch_size", "shard_rows"):
        if getattr(args, flag) <= 0:
            raise MmsaeError(f"--{flag.replace('_', '-')} must be positive")
    from mmsae.train.distributed import from_env

    ctx = from_env()  # torchrun's environment; one process without it
    rank, world = ctx.rank, ctx.world
    from mmsae.device import resolve_device

    device = str(resolve_device(ctx.device_for(args.device)))
    precision = args.precision if args.precision != "auto" else ("fp16" if device.startswith("cuda") else "fp32")
    spec = parse_model(args.model, args.weights)
    inputs = read_inputs(args.input, layout=args.layout, image_root=args.image_root)
    modalities = ("image", "text") if args.modality == "both" else (args.modality,)
    backend = load_backend(spec, device=device, precision=precision)
    wants_tokens = args.layer is not None or args.tokens is not None or args.patches_per_image is not None
    # captions' tokens when asked for text alone, or when the input holds captions and no pictures
    text_tower = wants_tokens and (
        args.modality == "text" or (args.modality == "both" and not inputs.images and bool(inputs.texts))
    )
    if wants_tokens and backend.text_only:
        raise MmsaeError(
            f"--layer/--tokens read a vision-language model's vision or text tower; {backend.model_id} is a "
            "text-only encoder"
        )
    if backend.text_only and not (inputs.texts and "text" in modalities):
        raise MmsaeError(
            f"{backend.model_id} is text-only and there are no captions to embed "
            f"({len(inputs.images)} images); use a vision-language model (open_clip:ARCH or hf:NAME)"
        )
    if backend.text_only and inputs.images and "image" in modalities and rank == 0:
        print(
            f"note: {backend.model_id} is text-only: embedding the {len(inputs.texts)} captions, not the "
            f"{len(inputs.images)} images",
            file=sys.stderr,
        )
    tokens = None
    if wants_tokens:
        from mmsae.backends.tokens import TokenConfig

        tokens = TokenConfig(
            layer=-1 if args.layer is None else args.layer,
            tokens=args.tokens or ("all" if text_tower else "patches"),
            per_image=args.patches_per_image,
            tower="text" if text_tower else "vision",
        )
        if text_tower:
            modalities = ("text",)
        elif inputs.texts and "text" in modalities and rank == 0:
            print(
                f"note: --layer/--tokens read the vision tower: embedding the {len(inputs.images)} images, not the "
                f"{len(inputs.texts)} captions (--modality text reads the captions' tokens)",
                file=sys.stderr,
            )
        modalities = ("image",) if "image" in modalities else modalities
    cfg = EmbedConfig(
        tokens=tokens,
        batch_size=args.batch_size,
        text_batch_size=args.text_batch_size,
        num_workers=args.workers,
        normalize=not args.no_normalize,
        dtype=args.dtype,
        shard_rows=args.shard_rows,
        modalities=modalities,
        progress=not args.json,
    )
    rep = embed(
        inputs,
        backend,
        args.out,
        cfg,
        source=os.path.abspath(args.input),
        rank=rank,
        world_size=world,
        barrier=ctx.barrier if ctx.active else None,
    )
    ctx.shutdown()  # the others wait for rank 0's merge, so the store is whole when torchrun returns
    if rank != 0:
        return 0
    if args.json:
        print_json(dataclasses.asdict(rep) | {"skipped": rep.skipped[:100]})
        return 0
    if rep.already_done:
        print(f"nothing to do: {rep.store} already holds this job's {rep.rows_written} rows ({rep.counts})")
        return 0
    rate = (rep.images_in + rep.texts_in - rep.resumed_items) / max(rep.seconds, 1e-9)
    extra = (
        [f"{rep.images_skipped} unreadable images skipped (listed in {rep.store}/embed-report.json)"]
        if rep.images_skipped
        else []
    )
    if rep.duplicate_texts:
        extra.append(f"{rep.duplicate_texts} repeated captions dropped")
    if rep.resumed_items:
        extra.append(f"resumed after {rep.resumed_items} items")
    if tokens is not None:
        read, unit = (
            (rep.texts_in, "caption") if tokens.tower == "text" else (rep.images_in - rep.images_skipped, "picture")
        )
        extra.append(f"{rep.rows_written:,} token rows ({rep.rows_written / max(read, 1):.1f} per {unit})")
    print(
        f"embedded {rep.images_in} images and {rep.texts_in} captions with {rep.model_id} into {rep.store} "
        f"in {rep.seconds:.1f} s ({rate:.1f} items/s); store holds {rep.counts}"
        + ("; " + "; ".join(extra) if extra else "")
    )
    return 0
