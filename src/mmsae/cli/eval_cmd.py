"""`mmsae eval`: reconstruction and sparsity metrics of an SAE on a store."""

from __future__ import annotations

from mmsae.cli.output import fraction, positive_int
from mmsae.cli.text_flags import add_text_encoder_flags, check_text_encoder_flags

KEYS = (
    "fvu",
    "r2",
    "fvu_per_sample",
    "r2_global",
    "nmae",
    "cosine",
    "l0",
    "l0_fraction_zero",
    "dead_fraction",
    "dense_fraction",
    "n_rows",
)


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate an SAE on a store (every metric, per modality)",
        description="Evaluate SAE on every row of STORE (or --split val/train, as split by the "
        "trainer's pair-id hash) in one streaming pass.",
    )
    p.add_argument("sae", help="SAE folder (mmsae or SAELens format)")
    p.add_argument("store", help="store folder")
    p.add_argument("--split", choices=["all", "train", "val"], default="all", help="rows to evaluate (default all)")
    p.add_argument(
        "--val-fraction",
        type=fraction,
        default=None,
        help="held-out share defining the split (default: the SAE's training value, else 0.1)",
    )
    p.add_argument("--modality", help="evaluate only this modality")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--per-image",
        choices=["max", "mean", "row"],
        default=None,
        help="on a store of patch tokens: also count sparsity per picture, a picture firing a concept "
        "when the max (default) or mean of its patches' codes does; row leaves that section out",
    )
    p.add_argument(
        "--crossmodal",
        choices=["auto", "yes", "no"],
        default="auto",
        help="cross-modal section (alignment, code-space retrieval, concept discovery, retrieval "
        "retention; on synthetic stores also shared-concept recovery and zero-shot retention); "
        "auto = when the store has image/text pairs",
    )
    p.add_argument(
        "--max-pairs", type=positive_int, default=5000, help="held-out pairs used by the cross-modal section"
    )
    p.add_argument(
        "--image-sae",
        help="with SAE as the text SAE: evaluate two independent SAEs (this one "
        "encodes images) as one cross-modal model",
    )
    z = p.add_argument_group("zero-shot classification of your labelled image rows")
    z.add_argument(
        "--zero-shot",
        metavar="CLASSNAMES",
        help="class names: a JSON list, a JSON object {dataset: [names]} as in CLIP_benchmark's "
        "en_classnames.json, or a text file, one a line; reports accuracy with the original and the "
        "reconstructed image (and prompt) embeddings",
    )
    z.add_argument(
        "--templates",
        metavar="TEMPLATES",
        help="prompt templates with {c} (or {}) for the class name, in the same formats (default 'a photo of a {c}.')",
    )
    z.add_argument("--dataset", help="the dataset key when CLASSNAMES/TEMPLATES are JSON objects of several")
    z.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="metadata column (from `mmsae import --metadata`) holding each image row's class: a name or an index",
    )
    add_text_encoder_flags(z)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.common import load_model, open_store_for, pooling_choice, val_fraction_of
    from mmsae.cli.output import print_json
    from mmsae.device import resolve_device
    from mmsae.errors import MmsaeError
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.models.paired import ModalityRouter

    args.device = str(resolve_device(args.device))
    zero_shot_flags = (args.templates, args.dataset, args.label_column, args.text_encoder, args.weights)
    if args.zero_shot is None and any(v is not None for v in zero_shot_flags):
        raise MmsaeError(
            "--templates, --dataset, --label-column, --text-encoder and --weights go with --zero-shot CLASSNAMES"
        )
    check_text_encoder_flags(args)
    if args.zero_shot is not None and args.label_column is None:
        raise MmsaeError("--zero-shot needs --label-column COLUMN: the metadata column holding each image's class")
    sae = load_model(args.sae, args.device)
    store = open_store_for(sae, args.store)
    per_image = pooling_choice(store, args.per_image, args.store)
    vf = val_fraction_of(sae, args.val_fraction)
    zs = zero_shot_inputs(store, args, vf) if args.zero_shot is not None else None  # before the long pass
    if args.image_sae:
        if getattr(sae, "paired", False):
            raise MmsaeError("--image-sae pairs two single-input SAEs; SAE is already a multimodal SAE")
        image_sae = load_model(args.image_sae, args.device)
        open_store_for(image_sae, args.store)
        try:
            sae = ModalityRouter({"image": image_sae, "text": sae}).to(args.device)
        except ValueError as exc:
            raise MmsaeError(str(exc)) from None
    res = evaluate_store(
        sae,
        store,
        split=args.split,
        val_fraction=vf,
        modality=args.modality,
        device=args.device,
        progress=not args.json,
    )
    if res.n_rows == 0:
        raise MmsaeError("no rows to evaluate for that split/modality")
    out = {k: res.metrics[k] for k in KEYS}
    out["split"] = args.split
    out["by_modality"] = {m: {k: r[k] for k in KEYS} for m, r in res.by_modality.items()}
    has_pairs = len(store.pairs()[0]) > 0
    if args.crossmodal == "yes" and not has_pairs:
        raise MmsaeError(f"--crossmodal yes needs image/text pairs; {args.store} has none")
    if args.crossmodal == "yes" or (args.crossmodal == "auto" and has_pairs):
        out["crossmodal"] = crossmodal_section(sae, store, args.split, vf, args.max_pairs, args.device)
    if per_image is not None:
        out["per_image"] = per_image_section(sae, store, per_image, args.split, vf, args.device, not args.json)
    if zs is not None:
        out["zero_shot"] = zero_shot_section(sae, store, zs, args.split, args.device)
    if args.json:
        print_json(out)
    else:
        print(format_table(out, args.sae, args.store))
        if "crossmodal" in out:
            print()
            print(format_crossmodal(out["crossmodal"]))
        if "per_image" in out:
            print()
            print(format_per_image(out["per_image"]))
        if "zero_shot" in out:
            print()
            print(format_zero_shot(out["zero_shot"]))
    return 0


def per_image_section(sae, store, how: str, split: str, val_fraction: float, device, progress: bool) -> dict:
    import numpy as np

    from mmsae.analysis.codes import picture_sparsity
    from mmsae.analysis.heatmaps import patch_pictures
    from mmsae.data.stream import split_mask

    keep = None
    if split != "all":
        keep = split_mask(store.pair_ids(), np.arange(len(store)), split, val_fraction)
    return picture_sparsity(sae, store, patch_pictures(store), how, keep, device=device, progress=progress)


def format_per_image(p: dict) -> str:
    return (
        f"per picture ({p['how']} over its patches): {p['pictures']:,} picture{'s' * (p['pictures'] != 1)}, "
        f"L0 {p['l0']:.2f}, "
        f"dead {p['dead_fraction']:.4f}, dense {p['dense_fraction']:.4f}, "
        f"mean activation of a fired concept {p['mean_activation']:.4g}"
    )


def zero_shot_inputs(store, args, val_fraction: float) -> dict:
    """Everything the zero-shot section needs, checked before the evaluation pass: the labelled
    image rows (of --split), their class indices and the class prompts' embeddings."""
    from mmsae.analysis.zero_shot import class_prompts, labels_of, read_list
    from mmsae.cli.text_flags import text_encoder
    from mmsae.data.stream import split_mask
    from mmsae.errors import MmsaeError

    classnames = read_list(args.zero_shot, args.dataset, "class names")
    templates = read_list(args.templates, args.dataset, "templates") if args.templates else ["a photo of a {c}."]
    if "image" not in store.manifest.counts:
        raise MmsaeError(f"--zero-shot classifies image rows; {args.store} has none")
    rows = store.rows("image")
    if args.split != "all":
        rows = rows[split_mask(store.pair_ids()[rows], rows, args.split, val_fraction)]
        if len(rows) == 0:
            raise MmsaeError(f"the {args.split} split holds no image rows; use --split all")
    values = [(e or {}).get(args.label_column) for e in store.extras(rows)]
    if all(v is None for v in values):
        raise MmsaeError(
            f"no image row has a {args.label_column!r} value; import the labels with `mmsae import --metadata` "
            "(a column of class names or indices)"
        )
    labels, dropped = labels_of(values, classnames)
    keep = labels >= 0
    if keep.sum() == 0:
        raise MmsaeError(f"none of the {args.label_column!r} values is one of the {len(classnames)} class names")
    return {
        "rows": rows[keep],
        "labels": labels[keep],
        "prompts_CD": class_prompts(text_encoder(args, store), classnames, templates),
        "n_classes": len(classnames),
        "n_templates": len(templates),
        "dropped": dropped,
    }


def zero_shot_section(sae, store, zs: dict, split: str, device) -> dict:
    """Zero-shot accuracy of the labelled image rows with original and reconstructed embeddings."""
    from mmsae.metrics.crossmodal import zero_shot_retention

    res = zero_shot_retention(sae, store.get(zs["rows"]), zs["labels"], zs["prompts_CD"], device=device)
    return {
        **res,
        "n_images": int(len(zs["rows"])),
        "n_classes": zs["n_classes"],
        "n_templates": zs["n_templates"],
        "chance": 1.0 / zs["n_classes"],
        "dropped": zs["dropped"],
        "split": split,
    }


def format_zero_shot(z: dict) -> str:
    drop = z["dropped"]
    skipped = (
        f"; skipped {drop['no_label']} without a label, {drop['not_a_class']} not a class" if any(drop.values()) else ""
    )
    return "\n".join(
        [
            f"zero-shot: {z['n_images']} labelled images ({z['split']} rows), {z['n_classes']} classes, "
            f"{z['n_templates']} templates, chance {z['chance']:.3f}{skipped}",
            f"  accuracy: original {z['original']:.3f}, reconstructed images {z['recon_image']:.3f} "
            f"({z['recon_image_relative']:.1%} retained), reconstructed prompts {z['recon_text']:.3f}, "
            f"both {z['recon_both']:.3f}",
        ]
    )


def crossmodal_section(sae, store, split: str, val_fraction: float, max_pairs: int, device) -> dict:
    from mmsae.data.synthetic import has_ground_truth, load_ground_truth, synth_config_of
    from mmsae.metrics.crossmodal import crossmodal_report

    split = "val" if split == "all" else split  # alignment is judged on held-out pairs unless asked otherwise
    cm = crossmodal_report(
        sae, store, split=split, val_fraction=val_fraction, max_pairs=max_pairs, device=device
    ).to_json()
    if has_ground_truth(store.root):
        from mmsae.analysis.crossmodal import shared_concept_recovery, synthetic_zero_shot

        gt, cfg = load_ground_truth(store.root), synth_config_of(store.root)
        rec = shared_concept_recovery(sae.cpu(), cfg, gt)
        cm["planted"] = {
            "shared_recovery": {k: v for k, v in rec.items() if k != "per_concept"},
            "zero_shot_retention": synthetic_zero_shot(sae, cfg, gt),
        }
    return cm


def format_crossmodal(cm: dict) -> str:
    if cm.get("n_pairs", 0) < 2:
        return "cross-modal: fewer than two held-out pairs"
    a, r = cm["alignment"], cm["code_retrieval"]
    lines = [
        f"cross-modal, {cm['n_pairs']} held-out pairs ({cm['split']} split, one caption per image)",
        f"  code space: alignment score {a['alignment_score']:.3f}, pair similarity mean {a['mean_pair_similarity']:.3f} "
        f"min {a['min_pair_similarity']:.3f}, all-pairs mean {a['mean_similarity']:.3f}",
        "  code-space retrieval     " + "  ".join(f"{k.replace('_recall', ' R')} {v:.3f}" for k, v in r.items()),
    ]
    ret = cm["retrieval_retention"]
    lines.append("  retrieval retention (recall with reconstructions / recall with originals):")
    for name in ("recon_image", "recon_text", "recon_both"):
        rel = ret[f"{name}_relative"]
        lines.append(
            f"    {name:<12} i2t R@1 {rel['i2t_recall@1']:.3f}  R@10 {rel['i2t_recall@10']:.3f}   "
            f"t2i R@1 {rel['t2i_recall@1']:.3f}  R@10 {rel['t2i_recall@10']:.3f}"
        )
    d = cm["concept_discovery"]
    top = ", ".join(f"{c['concept']} ({c['overlap']:.2f})" for c in d["ranked"][:8])
    lines.append(
        f"  concept discovery: mean top-decile overlap {d['mean_overlap_live']:.3f} over "
        f"{d['n_live_both_modalities']} concepts live in both; top: {top}"
    )
    if "planted" in cm:
        s, z = cm["planted"]["shared_recovery"], cm["planted"]["zero_shot_retention"]
        lines.append(
            f"  planted truth: shared concepts recovered as one latent firing on both sides "
            f"{s['shared_recovery']:.3f} ({s['n_evaluable']} evaluable)"
        )
        lines.append(
            f"  zero-shot accuracy: original {z['original']:.3f}, recon image {z['recon_image']:.3f}, "
            f"recon prompts {z['recon_text']:.3f}, both {z['recon_both']:.3f}"
        )
    return "\n".join(lines)


def format_table(res: dict, sae: str, store: str) -> str:
    cols = ["all", *res["by_modality"]]
    rows = [res, *res["by_modality"].values()]
    lines = [f"SAE {sae} on {store} (split: {res['split']})", f"{'metric':<18}" + "".join(f"{c:>12}" for c in cols)]
    for k in KEYS:
        fmt = "{:>12d}" if k == "n_rows" else "{:>12.4f}"
        lines.append(f"{k:<18}" + "".join(fmt.format(r[k]) for r in rows))
    return "\n".join(lines)
