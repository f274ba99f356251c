"""`mmsae import`: bring embedding files into a store."""

from __future__ import annotations

from mmsae.cli.output import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import embedding files (.npy .npz .safetensors .pt parquet) into a store",
        description="Import embeddings of one modality (EMB --modality M) or paired image/text files "
        "(--images IMG --texts TXT; row i of each is a pair unless --pairs is given). "
        "Re-running the same import (same file contents) resumes it without duplicating rows. Each "
        "import's pair ids are its own: a second paired import never pairs with the first.",
    )
    p.add_argument("embeddings", nargs="?", help="one embedding file of a single modality")
    p.add_argument("--modality", help="modality of EMB (e.g. image, text)")
    p.add_argument("--images", help="image embedding file")
    p.add_argument("--texts", help="text embedding file")
    p.add_argument("--pairs", help="CSV of 'image_row,text_row' (many captions per image)")
    p.add_argument("--captions", help="text file, one caption a line, one per text row")
    p.add_argument("--key", help="array name (npz/safetensors/pt) or column (parquet) holding the embeddings")
    p.add_argument("--out", required=True, help="store folder (created, or appended to)")
    p.add_argument("--model-id", default="unknown", help="model that produced the embeddings, recorded in the store")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default=None,
        help="on-disk dtype of a new store (default float32); appending keeps the store's own",
    )
    p.add_argument("--drop-invalid", action="store_true", help="skip rows holding NaN/inf instead of refusing the file")
    p.add_argument("--shard-rows", type=positive_int, default=65536, help="rows per shard (default 65536)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from mmsae.cli.output import print_json
    from mmsae.data.importers import import_embeddings

    rep = import_embeddings(
        args.out,
        embeddings=args.embeddings,
        modality=args.modality,
        images=args.images,
        texts=args.texts,
        pairs=args.pairs,
        captions=args.captions,
        key=args.key,
        model_id=args.model_id,
        dtype=args.dtype,
        drop_invalid=args.drop_invalid,
        shard_rows=args.shard_rows,
        progress=not args.json,
    )
    if args.json:
        print_json(dataclasses.asdict(rep))
    else:
        extra = (
            f"; skipped {rep.rows_skipped_resume} rows an earlier run of this import (same file contents) already wrote"
            if rep.rows_skipped_resume
            else ""
        )
        dropped = f", {rep.rows_dropped_invalid} invalid rows dropped" if rep.rows_dropped_invalid else ""
        print(f"imported {rep.rows_written} rows into {rep.store}{extra}{dropped}; store now holds {rep.counts}")
    return 0
