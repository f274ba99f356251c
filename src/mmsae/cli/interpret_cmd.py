"""`mmsae name`, `mmsae top`, `mmsae search`, `mmsae cluster`: what users look at."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mmsae.cli.common import read_names
from mmsae.cli.output import nonneg_float, nonneg_int, positive_int
from mmsae.cli.text_flags import add_text_encoder_flags, add_vocabulary_flags, check_text_encoder_flags

ALTERNATIVES_WITHIN = 0.02
"""Runner-up terms scoring within this much of a concept's name are worth printing beside it;
further down the list they are noise (a giraffe concept's "taller, snake, legged")."""


def register(sub) -> None:
    p = sub.add_parser(
        "name",
        help="name every concept from a vocabulary",
        description="Embeds a vocabulary (one term a line; blank lines, repeats, English stop words and "
        "terms under --min-length letters dropped) with the store's text encoder (--text-encoder, or the "
        "one recorded in the store; cached in STORE/vocab/) or reads precomputed --vocab-embeddings, "
        "then names each concept by the term closest to its decoder direction (--method decoder, "
        "centred term embeddings) or the term that activates it most through the encoder (--method "
        "encoder). Writes OUT/names.json and OUT/names.parquet (top-5 terms, scores, confidence).",
    )
    p.add_argument("sae")
    p.add_argument("store")
    p.add_argument(
        "--vocab", required=True, help="vocabulary file, one term a line (e.g. the SpLiCE MSCOCO vocabulary)"
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--method",
        choices=["decoder", "encoder", "pictures"],
        default=None,
        help="decoder (default), encoder, or pictures: for an SAE on patch tokens, the term whose cosine with "
        "the pictures' pooled embeddings (--pictures) best follows the concept's activation over them "
        "(the default on a store of patch tokens)",
    )
    p.add_argument(
        "--pictures",
        metavar="POOLED",
        help="with --method pictures: a store of the same pictures' pooled embeddings (`mmsae embed` without "
        "--tokens), matched by source path; its text encoder embeds the vocabulary",
    )
    p.add_argument(
        "--per-image",
        choices=["max", "mean"],
        default=None,
        help="with --method pictures: a picture's activation of a concept, the max (default) or mean over its patches",
    )
    p.add_argument(
        "--template",
        action="append",
        default=None,
        help="prompt template with {} for the term; repeat to average several (default 'a photo of a {}.')",
    )
    p.add_argument("--modality", choices=["image", "text"], default="text", help="decoder side to name (paired SAEs)")
    add_text_encoder_flags(p)
    add_vocabulary_flags(p)
    p.add_argument("--write-vocab", metavar="FILE", help="write the terms kept after filtering here, one a line")
    p.add_argument(
        "--alternatives-within",
        type=nonneg_float,
        default=ALTERNATIVES_WITHIN,
        help="print a concept's runner-up terms only when they score within this much of its name "
        f"(default {ALTERNATIVES_WITHIN})",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_name)

    t = sub.add_parser(
        "top",
        help="top-k images and texts of every concept (one streaming pass)",
        description="Writes OUT/top_examples.parquet: concept, modality, rank, row_id, activation.",
    )
    t.add_argument("sae")
    t.add_argument("store")
    t.add_argument("--out", required=True)
    t.add_argument(
        "-k",
        type=positive_int,
        default=None,
        help="examples per concept and modality (default 12: the pool text queries rank rows from, "
        "in `mmsae search` and the explorer)",
    )
    t.add_argument(
        "--per-image",
        choices=["max", "mean", "row"],
        default=None,
        help="on a store of patch tokens: rank pictures, each once, by the max (default) or mean of its "
        "patches' codes; row ranks every token row on its own",
    )
    t.add_argument("--show", type=nonneg_int, default=5, help="print this many concepts (default 5)")
    t.add_argument(
        "--heatmaps",
        metavar="DIR",
        help="on a store of patch tokens (`embed --tokens patches`): also draw each concept's top pictures "
        "with its activation over the patches into DIR (one PNG per concept and picture, heatmaps.json)",
    )
    t.add_argument(
        "--heatmap-concepts",
        help="comma-separated concepts to draw (default: the 16 that fire on the most pictures)",
    )
    t.add_argument("--heatmap-images", type=positive_int, default=8, help="pictures drawn per concept (default 8)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=run_top)

    s = sub.add_parser(
        "search",
        help="word → concepts → rows, or row → concepts and similar rows",
        description="--query: embeds the text with the text encoder (--text-encoder, else the store's), "
        "finds the concepts it fires (and, with --names, the concepts whose names are nearest, as "
        "suggestions) and ranks rows by Σ query activation × row activation over the top examples of "
        "its 5 strongest concepts, as the explorer does. --row: the row's top concepts (with names) and its most similar rows of the "
        "same modality by code cosine; --splice also decomposes it over the vocabulary.",
    )
    s.add_argument("sae")
    s.add_argument("store")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="text to search for")
    what.add_argument("--row", type=nonneg_int, help="row id to explain")
    s.add_argument("--names", help="names.json from `mmsae name`")
    s.add_argument(
        "--target",
        choices=["image", "text"],
        default=None,
        help="modality of the rows to return (default: image if the store has images, else text)",
    )
    s.add_argument("--top", type=positive_int, default=5)
    s.add_argument("--splice", help="with --row: vocabulary file for a SpLiCE decomposition beside the SAE's")
    add_text_encoder_flags(s)
    add_vocabulary_flags(s, "--splice")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_search)

    c = sub.add_parser("cluster", help="k-means over codes: groups of rows and their dominant concepts")
    c.add_argument("sae")
    c.add_argument("store")
    c.add_argument("--clusters", type=positive_int, default=20)
    c.add_argument("--modality", choices=["image", "text"], default=None, help="cluster rows of one modality")
    c.add_argument("--max-rows", type=positive_int, default=50000)
    c.add_argument("--names", help="names.json from `mmsae name`")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_cluster)


def _load(args):
    from mmsae.cli.common import load_model, open_store_for

    model = load_model(args.sae)
    return model, open_store_for(model, args.store)


def run_name(args) -> int:
    import dataclasses

    from mmsae.analysis.naming import alternatives, name_concepts, write_names
    from mmsae.cli.output import print_json
    from mmsae.cli.text_flags import vocabulary
    from mmsae.fileio import atomic_write

    check_text_encoder_flags(args)
    _check_write_vocab(args)
    model, store = _load(args)
    templates = tuple(args.template or ("a photo of a {}.",))
    args.method = _naming_method(args, store)
    extra_meta = {}
    if args.method == "pictures":
        names, terms, extra_meta = _name_by_pictures(args, model, store, templates)
    else:
        terms, E = vocabulary(args, store, args.vocab, templates, progress=not args.json)
        names = name_concepts(model, E, terms, method=args.method, modality=args.modality)
    out = Path(args.out)
    meta = {
        "vocab": str(args.vocab),
        "n_terms": len(terms),
        "method": args.method,
        "templates": list(templates),
        "modality": args.modality,
        "term_embeddings": str(args.vocab_embeddings) if args.vocab_embeddings else "text encoder",
        **extra_meta,
    }
    write_names(names, out, meta)
    written = [str(out / "names.json"), str(out / "names.parquet")]
    if args.write_vocab:
        text = "".join(t + "\n" for t in terms)
        atomic_write(Path(args.write_vocab), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        written.append(str(args.write_vocab))
    if args.json:
        print_json({**meta, "written": written, "concepts": [dataclasses.asdict(n) for n in names[:20]]})
        return 0
    best = sorted((n for n in names if n.name is not None), key=lambda n: -n.confidence)[:10]
    unnamed = sum(n.name is None for n in names)
    print(
        f"named {len(names) - unnamed} of {len(names)} concepts from {len(terms)} terms ({args.method}"
        f"{f'; {unnamed} with no term scoring above 0' if unnamed else ''}); most confident:"
    )
    for n in best:
        alts = alternatives(n, args.alternatives_within)[:3]
        also = f"  (also within {args.alternatives_within:g}: {', '.join(alts)})" if alts else ""
        margin = "–" if n.confidence != n.confidence else f"{n.confidence:.3f}"  # NaN: a one-term vocabulary
        print(f"  {n.concept:>6}  {n.name:<20} margin {margin}{also}")
    print("written: " + ", ".join(written))
    return 0


def _naming_method(args, store) -> str:
    """decoder by default, pictures on a store of patch tokens (the only way words reach them);
    --pictures and --method pictures go together, and only with patch tokens."""
    from mmsae.analysis.heatmaps import has_patches
    from mmsae.errors import MmsaeError

    patches = has_patches(store)
    method = args.method or ("pictures" if patches else "decoder")
    if method == "pictures":
        if not patches:
            raise MmsaeError(
                f"--method pictures names the concepts of an SAE on patch tokens; {args.store} holds one row per "
                "input: use --method decoder or encoder"
            )
        if not args.pictures:
            raise MmsaeError(
                f"{args.store} holds patch tokens, which no text encoder reads: name their concepts through a "
                "store of the same pictures' pooled embeddings (--pictures POOLED, `mmsae embed` without --tokens)"
            )
    elif args.pictures or args.per_image:
        flag = "--pictures" if args.pictures else "--per-image"
        raise MmsaeError(f"{flag} goes with --method pictures, not --method {method}")
    args.per_image = args.per_image or "max"
    return method


def _name_by_pictures(args, model, store, templates):
    """(names, terms, what the names file records) for --method pictures (`naming.name_by_pictures`)."""
    import numpy as np

    from mmsae.analysis.codes import picture_activations
    from mmsae.analysis.heatmaps import patch_pictures, picture_sources
    from mmsae.analysis.naming import name_by_pictures
    from mmsae.cli.text_flags import vocabulary
    from mmsae.data.store import EmbeddingStore
    from mmsae.errors import MmsaeError

    pooled = EmbeddingStore(args.pictures)
    if pooled.manifest.preprocessing.get("tokens"):
        raise MmsaeError(f"--pictures {args.pictures} holds token rows: give a store of pooled embeddings")
    picture_R = patch_pictures(store)
    source_of = picture_sources(store, picture_R)
    image_rows = np.flatnonzero(pooled.modalities() == "image")
    pooled_sources = pooled.metadata(["source"]).column("source").to_pylist()
    where = {}
    for r in image_rows.tolist():
        where.setdefault(pooled_sources[r], r)
    pictures = np.unique(picture_R[picture_R >= 0])  # as picture_activations orders them
    matched = [(i, where[source_of[int(p)]]) for i, p in enumerate(pictures) if source_of[int(p)] in where]
    if len(matched) < 3:  # before the pass over the store
        raise MmsaeError(
            f"{len(matched)} of the {len(pictures)} pictures of {args.store} are in --pictures {args.pictures} "
            "(matched by source path): embed the same pictures without --tokens"
        )
    from mmsae.data.images import image_root

    roots = image_root(store), image_root(pooled)
    if None not in roots and Path(roots[0]).resolve() != Path(roots[1]).resolve():
        print(
            f"note: the pictures are matched by their path under each store's image folder, and these differ "
            f"({roots[0]} and {roots[1]}): make sure they hold the same pictures",
            file=sys.stderr,
        )
    if len(matched) < len(pictures):
        print(
            f"note: {len(pictures) - len(matched)} of the {len(pictures)} pictures are not in --pictures "
            f"{args.pictures}; naming from the other {len(matched)}",
            file=sys.stderr,
        )
    terms, E = vocabulary(args, pooled, args.vocab, templates, progress=not args.json)
    pictures, acts = picture_activations(model, store, picture_R, args.per_image, progress=not args.json)
    keep, rows = (np.array(x) for x in zip(*matched))
    names = name_by_pictures(acts[keep], pooled.get(rows), E, terms)
    meta = {"pictures": str(args.pictures), "per_image": args.per_image, "pictures_matched": len(matched)}
    return names, terms, meta


def _check_write_vocab(args) -> None:
    """--write-vocab must not replace the vocabulary it filters (whose lines --vocab-embeddings
    rows follow), and its folder must exist: checked before the work."""
    from mmsae.errors import MmsaeError

    if not args.write_vocab:
        return
    target = Path(args.write_vocab)
    if target.resolve() == Path(args.vocab).resolve():
        raise MmsaeError("--write-vocab would overwrite --vocab; write the kept terms to another file")
    if not target.parent.is_dir():
        raise MmsaeError(f"--write-vocab {target}: no folder {target.parent}")


def run_top(args) -> int:
    from mmsae.analysis.search import QUERY_POOL
    from mmsae.analysis.top_examples import write_top_examples
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError

    args.k = QUERY_POOL if args.k is None else args.k
    if args.k < 1:
        raise MmsaeError(f"-k must be at least 1, got {args.k}")
    model, store = _load(args)
    concepts = None
    if args.heatmap_concepts and not args.heatmaps:
        raise MmsaeError("--heatmap-concepts chooses what --heatmaps DIR draws; pass --heatmaps too")
    if args.heatmaps:
        from mmsae.analysis.heatmaps import token_layout

        token_layout(store)  # a pooled store is refused before the long pass
        if args.heatmap_concepts:
            try:
                concepts = [int(c) for c in args.heatmap_concepts.split(",") if c.strip()]
            except ValueError:
                raise MmsaeError(
                    f"--heatmap-concepts takes comma-separated integers, got {args.heatmap_concepts!r}"
                ) from None
            F = int(model.cfg.dict_size)
            if not concepts:
                raise MmsaeError(f"--heatmap-concepts names no concept: {args.heatmap_concepts!r}")
            if any(not 0 <= c < F for c in concepts):
                raise MmsaeError(f"--heatmap-concepts must lie in 0..{F - 1}, got {args.heatmap_concepts}")
    from mmsae.cli.common import pooling_choice

    per_image = pooling_choice(store, args.per_image, args.store)
    summary, tops = write_top_examples(model, store, args.out, k=args.k, progress=not args.json, per_image=per_image)
    if args.heatmaps:
        from mmsae.analysis.heatmaps import write_heatmaps

        drawn = write_heatmaps(
            model, store, args.heatmaps, concepts, per_concept=args.heatmap_images, progress=not args.json
        )
        unreadable = json.loads((Path(args.heatmaps) / "heatmaps.json").read_text())["unreadable"]
        summary["heatmaps"] = {
            "dir": args.heatmaps,
            "concepts": len(drawn),
            "pictures": sum(len(v) for v in drawn.values()),
            "unreadable": len(unreadable),
        }
    if args.json:
        print_json(summary)
        return 0
    if args.heatmaps:
        h = summary["heatmaps"]
        gone = f" ({h['unreadable']} unreadable pictures skipped: listed in heatmaps.json)" if h["unreadable"] else ""
        print(f"heatmaps of {h['concepts']} concepts over {h['pictures']} pictures → {h['dir']}{gone}")
    print(f"top {args.k} examples per concept and modality → {summary['written']} ({summary['rows']} rows)")
    for mod in sorted(tops):
        ids_KF = tops[mod][1]
        fired = [c for c in range(ids_KF.shape[1]) if ids_KF[0, c] >= 0][: args.show]
        shown = [[int(r) for r in ids_KF[:3, c] if r >= 0] for c in fired]
        labels = iter(store.labels([r for rows in shown for r in rows]))
        for c, rows in zip(fired, shown):
            print(f"  concept {c} ({mod}): " + " | ".join(next(labels)[:40] for _ in rows))
    return 0


def run_search(args) -> int:
    from mmsae.analysis.search import explain_row, search_text
    from mmsae.cli.output import print_json
    from mmsae.cli.text_flags import text_encoder, vocabulary
    from mmsae.errors import MmsaeError

    check_text_encoder_flags(args)
    model, store = _load(args)
    names = read_names(args.names, model.cfg.dict_size)
    if args.query is not None:
        if args.splice or args.vocab_embeddings:
            raise MmsaeError("--splice and --vocab-embeddings go with --row")
        res = search_text(model, store, args.query, text_encoder(args, store), names, top=args.top, target=args.target)
    else:
        if args.vocab_embeddings and not args.splice:
            raise MmsaeError("--vocab-embeddings needs --splice VOCAB")
        splice = vocabulary(args, store, args.splice) if args.splice else None
        res = explain_row(model, store, args.row, names, top=args.top, splice=splice)
    if args.json:
        print_json(res)
        return 0
    if args.query is not None:
        print(f"query {args.query!r}: concepts by encoding the query:")
        for c in res["by_encoding"]:
            print(f"  {c['concept']:>6}  {c['activation']:.3f}  {c['name'] or ''}")
        if "by_name" in res:
            print("concepts by name:")
            for c in res["by_name"]:
                print(f"  {c['concept']:>6}  {c['similarity']:.3f}  {c['name'] or ''}")
        print(f"{res['target']} rows where they fire most:")
        for r in res["rows"]:
            print(f"  row {r['row']:>7}  {r['score']:.3f}  {(r['text'] or '')[:70]}")
    else:
        print(f"row {res['row']} ({res['modality']}): {(res['text'] or '')[:80]}")
        print("top concepts:")
        for c in res["concepts"]:
            print(f"  {c['concept']:>6}  {c['activation']:.3f}  {c['name'] or ''}")
        print("most similar rows by code cosine:")
        for s in res["similar"]:
            print(f"  row {s['row']:>7}  {s['cosine']:.3f}  {(s['text'] or '')[:70]}")
        if "splice" in res:
            sp, sa = res["splice"], res["sae_reconstruction"]
            print(
                f"SpLiCE: L0 {sp['l0']}, cosine {sp['cosine']:.3f}: "
                + ", ".join(f"{t} {w:.2f}" for t, w in sp["terms"][:8])
            )
            print(f"SAE:    L0 {sa['l0']}, cosine {sa['cosine']:.3f}")
    return 0


def run_cluster(args) -> int:
    import numpy as np

    from mmsae.analysis.clustering import cluster_codes
    from mmsae.analysis.search import encode_rows
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError

    model, store = _load(args)
    rows = store.rows(args.modality) if args.modality else np.arange(len(store))
    if len(rows) > args.max_rows:
        rows = np.sort(np.random.default_rng(0).choice(rows, args.max_rows, replace=False))
    if len(rows) < args.clusters:
        raise MmsaeError(
            f"{len(rows)} rows for {args.clusters} clusters; ask for fewer --clusters (or more --max-rows)"
        )
    res = cluster_codes(encode_rows(model, store, rows), args.clusters, read_names(args.names, model.cfg.dict_size))
    shown = [int(rows[i]) for c in res["clusters"] for i in c["examples"]]
    labels = dict(zip(shown, store.labels(shown)))
    for c in res["clusters"]:
        c["examples"] = [{"row": int(rows[i]), "text": labels[int(rows[i])]} for i in c["examples"]]
    res.pop("labels")
    if args.json:
        print_json(res)
        return 0
    for c in res["clusters"]:
        names = ", ".join(f"{x['concept']}" + (f" ({x['name']})" if x["name"] else "") for x in c["concepts"][:4])
        ex = (c["examples"][0]["text"] or "")[:50] if c["examples"] else ""
        print(f"cluster {c['cluster']:>3}  {c['size']:>6} rows  concepts {names}  e.g. {ex}")
    return 0
