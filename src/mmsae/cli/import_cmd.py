"""`mmsae import`: bring embedding files into a store."""

from __future__ import annotations

from mmsae.cli.output import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import embedding files (.npy .npz .safetensors .pt parquet) into a store",
        description="Import embeddings of one modality (EMB --modality M) or paired image/text files "
        "(--images IMG --texts TXT; row i of each is a pair unless --pairs is given), with optional "
        "per-row --metadata (image paths or URLs, captions, pair ids, other columns), or the output "
        "folder of clip-retrieval's inference (--clip-retrieval DIR). "
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
    p.add_argument(
        "--metadata",
        metavar="FILE",
        help="CSV, JSONL or parquet with a row per embedding row (per pair with --images and --texts), in "
        "order or keyed by a 'row' column: image_path or url (the rows' source), caption (their text), "
        "pair_id, and any other columns (kept as extra metadata)",
    )
    p.add_argument(
        "--image-root",
        metavar="DIR",
        help="folder the image_path values are relative to; recorded in the store so the explorer shows the images",
    )
    p.add_argument(
        "--clip-retrieval",
        metavar="DIR",
        help="import the folder clip-retrieval inference wrote (img_emb/, text_emb/, metadata/), "
        "instead of EMB or --images/--texts",
    )
    p.add_argument(
        "--text-encoder",
        metavar="SPEC",
        help="record the model that embeds text into this space (minilm, hf:NAME_OR_DIR, open_clip:ARCH "
        "with --weights), so name, search and explore can embed words without being told",
    )
    p.add_argument("--weights", help="with --text-encoder open_clip:ARCH: pretrained tag, checkpoint file or folder")
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
    from mmsae.cli.text_flags import check_text_encoder_flags
    from mmsae.errors import MmsaeError

    spec = check_text_encoder_flags(args)  # checked before anything is written
    encoder_dim = None if spec is None else _check_text_encoder(args.out, spec)
    common = dict(
        model_id=args.model_id,
        dtype=args.dtype,
        drop_invalid=args.drop_invalid,
        shard_rows=args.shard_rows,
        image_root=args.image_root,
        progress=not args.json,
    )
    if args.clip_retrieval is not None:
        from mmsae.data.clip_retrieval import import_clip_retrieval

        given = [
            flag
            for flag, v in (
                ("EMB", args.embeddings),
                ("--modality", args.modality),
                ("--images", args.images),
                ("--texts", args.texts),
                ("--pairs", args.pairs),
                ("--captions", args.captions),
                ("--key", args.key),
                ("--metadata", args.metadata),
            )
            if v is not None
        ]
        if given:
            raise MmsaeError(
                f"--clip-retrieval reads its folder's own embeddings and metadata; leave out {', '.join(given)}"
            )
        rep = import_clip_retrieval(args.out, args.clip_retrieval, **common)
    else:
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
            metadata=args.metadata,
            **common,
        )
    if spec is not None:
        from mmsae.data.manifest import TEXT_ENCODER_KEY
        from mmsae.data.store import record_setting

        _check_text_encoder(args.out, spec, encoder_dim, imported=rep.rows_written)
        record_setting(args.out, TEXT_ENCODER_KEY, spec.to_json(), "--text-encoder")
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


def _check_text_encoder(out: str, spec, encoder_dim: int | None = None, imported: int | None = None) -> int:
    """The --text-encoder's width, once it is known to fit the store: refused in one line when the
    store records another text encoder or holds vectors of another width. Checked before the import
    for an existing store, and again after it (before recording) for a store the import created."""
    from pathlib import Path

    from mmsae.data.manifest import MANIFEST_NAME, TEXT_ENCODER_KEY, read_manifest
    from mmsae.data.store import refuse_other_setting
    from mmsae.errors import MmsaeError

    manifest = read_manifest(Path(out)) if (Path(out) / MANIFEST_NAME).is_file() else None
    if manifest is not None:
        refuse_other_setting(manifest.preprocessing, out, TEXT_ENCODER_KEY, spec.to_json(), "--text-encoder")
    if encoder_dim is None:
        from mmsae.backends.registry import load_backend

        encoder_dim = load_backend(spec).dim
    if manifest is not None and manifest.dim != encoder_dim:
        done = f"imported {imported} rows, but " if imported is not None else ""
        raise MmsaeError(
            f"{done}--text-encoder {spec.model_id} gives {encoder_dim}-d embeddings and the store holds "
            f"{manifest.dim}-d ones; it was not recorded (name the model that made the text embeddings)"
        )
    return encoder_dim
