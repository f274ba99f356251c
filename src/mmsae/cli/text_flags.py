"""The options every command that turns words into vectors shares (`name`, `search`, `explore`).

One set of flags and one resolver, so `--text-encoder` means the same model everywhere and a
vocabulary's precomputed embeddings are read by one rule: row i belongs to line i of the file.
"""

from __future__ import annotations

from mmsae.cli.output import nonneg_int


def add_text_encoder_flags(p) -> None:
    p.add_argument(
        "--text-encoder",
        metavar="SPEC",
        help="model that embeds text into the store's space: minilm, hf:NAME_OR_DIR, or open_clip:ARCH "
        "(with --weights); default: the one recorded in the store (by `mmsae embed` or `mmsae import "
        "--text-encoder`)",
    )
    p.add_argument("--weights", help="with --text-encoder open_clip:ARCH: pretrained tag, checkpoint file or folder")


def add_vocabulary_flags(p, vocab_flag: str = "--vocab") -> None:
    p.add_argument(
        "--vocab-embeddings",
        metavar="NPY",
        help=f"precomputed term embeddings instead of a text encoder: row i embeds line i of {vocab_flag} "
        "as given (before any filtering); .npy/.npz/.safetensors/.pt/.parquet",
    )
    p.add_argument("--keep-stopwords", action="store_true", help="keep English stop words (dropped by default)")
    p.add_argument(
        "--min-length", type=nonneg_int, default=3, help="drop terms shorter than this many characters (default 3)"
    )


def check_text_encoder_flags(args):
    """The parsed `--text-encoder` spec (None when not given), refusing `--weights` without it;
    called before any work, so a typo costs nothing."""
    from mmsae.backends.registry import parse_model
    from mmsae.errors import MmsaeError

    spec, weights = getattr(args, "text_encoder", None), getattr(args, "weights", None)
    if spec is None:
        if weights is not None:
            raise MmsaeError("--weights needs --text-encoder open_clip:ARCH")
        return None
    return parse_model(spec, weights)


def text_encoder(args, store):
    """The encoder `--text-encoder`/`--weights` name, else the store's recorded one (one-line errors)."""
    from mmsae.backends.registry import text_encoder_for

    check_text_encoder_flags(args)
    return text_encoder_for(store, getattr(args, "text_encoder", None), getattr(args, "weights", None))


def vocabulary(args, store, vocab_path: str, templates: tuple[str, ...] = ("a photo of a {}.",), progress=False):
    """(terms, [T, D] unit embeddings) of a vocabulary: from `--vocab-embeddings` when given,
    else embedded (and cached in the store) with the text encoder."""
    from mmsae.analysis.naming import embed_vocabulary, read_vocabulary, vocabulary_with_embeddings

    drop = not args.keep_stopwords
    if args.vocab_embeddings:
        if getattr(args, "text_encoder", None):
            from mmsae.errors import MmsaeError

            raise MmsaeError("give --vocab-embeddings or --text-encoder, not both")
        return vocabulary_with_embeddings(vocab_path, args.vocab_embeddings, store.dim, drop, args.min_length)
    terms = read_vocabulary(vocab_path, drop_stopwords=drop, min_length=args.min_length)
    encoder = text_encoder(args, store) if getattr(args, "text_encoder", None) else None
    return terms, embed_vocabulary(store, terms, encoder=encoder, templates=templates, progress=progress)
