"""`mmsae hallucination`: detect captions whose concepts are absent from their image, against the raw-cosine baseline."""

from __future__ import annotations

from mmsae.cli.output import nonneg_int, positive_int, unit_float


def register(sub) -> None:
    p = sub.add_parser(
        "hallucination",
        help="score concept-level hallucination detection and mitigation",
        description="Fits the concept detector (per-concept weights from matched training pairs, "
        "no labels), then evaluates it against the raw image-caption cosine on a "
        "labelled set: on a synthetic store, fresh pairs half of whose captions had one "
        "object concept swapped for one absent from the image; on any other paired store, "
        "held-out pairs half of whose captions were replaced by another image's caption. "
        "Thresholds are fitted on one half, metrics reported on the other. Also reports "
        "how mitigation (moving the caption's code toward the image's on the most "
        "different concepts) changes the retrieval of the caption's own image.",
    )
    p.add_argument("sae", help="SAE folder (multimodal, vlsae, or a single SAE used for both modalities)")
    p.add_argument("store", help="paired store folder")
    p.add_argument("--n", type=positive_int, default=4000, help="labelled pairs to evaluate (default 4000)")
    p.add_argument(
        "--reference", type=positive_int, default=20000, help="matched training pairs used to fit the detector"
    )
    p.add_argument("--mitigate-concepts", type=nonneg_int, default=4, help="concepts moved by mitigation (default 4)")
    p.add_argument("--beta", type=unit_float, default=1.0, help="mitigation strength in [0, 1] (default 1)")
    p.add_argument(
        "--score",
        nargs=2,
        metavar=("IMAGES", "TEXTS"),
        help="also score your own pairs: two embedding files (.npy/.npz/.safetensors/.pt/.parquet) "
        "whose row i is a pair; each gets a score and a decision at the SAE threshold fitted above",
    )
    p.add_argument("--scores-out", help="with --score: write row, score, flagged as CSV here")
    p.add_argument(
        "--mitigate",
        action="store_true",
        help="write mitigated caption embeddings of the flagged pairs (the store's pairs, or your --score "
        "pairs) to --out FILE.npy, and which rows they are to FILE.rows.csv",
    )
    p.add_argument("--out", metavar="FILE.npy", help="with --mitigate: where the mitigated text embeddings go")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def labelled_set(store, n: int, val_fraction: float, seed: int):
    """(img, txt, labels, kind) for the store: planted swaps if synthetic, else swapped captions."""
    import numpy as np

    from mmsae.data.synthetic import hallucination_set, has_ground_truth, load_ground_truth, synth_config_of
    from mmsae.metrics.crossmodal import held_out_pairs

    if has_ground_truth(store.root):
        img, txt, lab, _ = hallucination_set(synth_config_of(store.root), load_ground_truth(store.root), n, seed=seed)
        return img, txt, lab, "planted concept swaps (synthetic ground truth)"
    img_rows, txt_rows = held_out_pairs(store, "val", val_fraction, n, seed)
    rng = np.random.default_rng([seed, 11])  # not the stream that splits calibration from test
    lab = (rng.random(len(img_rows)) < 0.5).astype(np.int64)
    txt_rows = txt_rows.copy()
    bad = np.nonzero(lab)[0]
    txt_rows[bad] = txt_rows[np.roll(bad, 1)] if len(bad) > 1 else txt_rows[bad]
    return store.get(img_rows), store.get(txt_rows), lab, "captions swapped between held-out pairs"


def run(args) -> int:

    from mmsae.analysis.hallucination import (
        HallucinationDetector,
        clip_score,
        compare_with_clip_score,
        mitigation_effect,
    )
    from mmsae.cli.common import load_model, open_store_for, require_pairs, val_fraction_of
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError
    from mmsae.metrics.crossmodal import held_out_pairs

    if args.mitigate != (args.out is not None):
        raise MmsaeError("--mitigate and --out FILE.npy go together")
    if args.out is not None:
        from pathlib import Path

        out = Path(args.out)
        if out.suffix != ".npy":
            raise MmsaeError(f"--out {args.out}: give a .npy file name")
        if not out.parent.is_dir():
            raise MmsaeError(f"--out {args.out}: no folder {out.parent}")
        if out.resolve().is_relative_to(Path(args.store).resolve()):
            raise MmsaeError(f"--out {args.out} is inside the store; write it elsewhere")
    if args.n < 20:
        raise MmsaeError(f"--n must be at least 20, got {args.n}")
    if not 0.0 <= args.beta <= 1.0:
        raise MmsaeError(f"--beta must be in [0, 1], got {args.beta}")
    model = load_model(args.sae)
    store = open_store_for(model, args.store)
    require_pairs(store, "hallucination detection")
    vf = val_fraction_of(model, None)
    ref_img_rows, ref_txt_rows = held_out_pairs(store, "train", vf, args.reference, args.seed)
    det = HallucinationDetector.fit(model, store.get(ref_img_rows), store.get(ref_txt_rows))
    img, txt, lab, kind = labelled_set(store, args.n, vf, args.seed)
    if lab.sum() < 2 or (1 - lab).sum() < 2:
        if vf == 0:
            raise MmsaeError("the SAE trained on every pair (--val-fraction 0): no held-out pairs to evaluate on")
        raise MmsaeError("too few held-out pairs to build a labelled set; use a larger store")
    res = compare_with_clip_score(det.score(model, img, txt), clip_score(img, txt), lab, seed=args.seed)
    res["labelled_set"] = kind
    res["n_requested"] = args.n
    res["n_labelled"] = int(len(lab))
    res["n_reference_pairs"] = int(len(ref_img_rows))
    res["mitigation"] = mitigation_effect(model, img, txt, lab, args.mitigate_concepts, args.beta)
    if args.score:
        res["scored"] = score_user_pairs(det, model, store.dim, args.score, res["sae"]["threshold"], args.scores_out)
    elif args.scores_out:
        raise MmsaeError("--scores-out needs --score IMAGES TEXTS")
    if args.mitigate:
        res["mitigated"] = write_mitigated(det, model, store, args, res["sae"]["threshold"])
    if args.json:
        print_json(res)
        return 0
    if len(lab) < args.n:
        print(
            f"note: the store has {len(lab)} held-out pairs, fewer than --n {args.n}; all {len(lab)} are used "
            "(half for thresholds, half for the scores below)"
        )
    print(
        f"hallucination detection on {res['n_test']} test pairs ({kind}); thresholds fitted on "
        f"{res['n_calibration']} others; detector fitted on {res['n_reference_pairs']} matched training pairs"
    )
    print(f"{'method':<22}{'precision':>10}{'recall':>9}{'F1':>8}{'AUROC':>8}")
    for name, label in (("sae", "SAE concepts"), ("clip_score", "raw cosine (CLIP score)")):
        r = res[name]
        print(f"{label:<22}{r['precision']:>10.3f}{r['recall']:>9.3f}{r['f1']:>8.3f}{r['auroc']:>8.3f}")
    mt = res["mitigation"]
    print(
        f"mitigation ({mt['n_concepts']} concepts, beta {mt['beta']}): corrupted captions retrieve their own image "
        f"at R@1 {mt['before']['recall@1']:.3f} → {mt['after']['recall@1']:.3f}, mean rank "
        f"{mt['before']['mean_rank']:.1f} → {mt['after']['mean_rank']:.1f} (of {len(img)} images)"
    )
    if args.mitigate:
        mg = res["mitigated"]
        print(
            f"mitigated {mg['n_flagged']} flagged of {mg['n_pairs']} {mg['pairs']}: embeddings in {mg['written'][0]}, "
            f"rows in {mg['written'][1]}"
        )
    if args.score:
        sc = res["scored"]
        print(
            f"your pairs: {sc['n']} scored, {sc['n_flagged']} flagged (score ≥ {sc['threshold']:.3f})"
            + (f"; written to {args.scores_out}" if args.scores_out else "")
        )
        for i, (s_, f_) in enumerate(zip(sc["scores"][:20], sc["flagged"][:20])):
            print(f"  pair {i}: score {s_:.3f}{'  FLAGGED' if f_ else ''}")
        if sc["n"] > 20:
            print(f"  … {sc['n'] - 20} more (use --scores-out or --json)")
    return 0


def score_user_pairs(det, model, dim: int, paths, threshold: float, out_csv: str | None) -> dict:
    import csv

    import numpy as np

    from mmsae.data.importers import invalid_rows, load_embeddings
    from mmsae.errors import MmsaeError

    img, txt = (load_embeddings(p) for p in paths)
    for path, arr in zip(paths, (img, txt)):
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise MmsaeError(f"{path}: expected [N, {dim}] embeddings, got shape {arr.shape}")
        bad = invalid_rows(arr)
        if len(bad):
            raise MmsaeError(f"{path}: {len(bad)} row(s) hold NaN or inf (first: row {int(bad[0])})")
    if len(img) != len(txt):
        raise MmsaeError(f"--score: {len(img)} image rows but {len(txt)} text rows; row i of each must be a pair")
    scores = det.score(model, np.asarray(img, dtype=np.float32), np.asarray(txt, dtype=np.float32))
    flagged = scores >= threshold
    if out_csv:
        with open(out_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row", "score", "flagged"])
            w.writerows((i, f"{s:.6f}", int(fl)) for i, (s, fl) in enumerate(zip(scores, flagged)))
    return {
        "n": int(len(scores)),
        "n_flagged": int(flagged.sum()),
        "threshold": float(threshold),
        "scores": [float(s) for s in scores],
        "flagged": [bool(f) for f in flagged],
    }


def write_mitigated(det, model, store, args, threshold: float, block: int = 65536) -> dict:
    """Score every pair (the --score files', else the store's), mitigate the flagged captions, and
    write their new embeddings (FILE.npy, [flagged, D] float32) and rows (FILE.rows.csv)."""
    import csv
    from pathlib import Path

    import numpy as np

    from mmsae.analysis.hallucination import mitigate
    from mmsae.data.importers import load_embeddings
    from mmsae.fileio import atomic_write, atomic_write_stream

    if args.score:
        img_all, txt_all = (np.asarray(load_embeddings(p), dtype=np.float32) for p in args.score)
        img_rows = txt_rows = np.arange(len(img_all))
        get_img, get_txt, pairs = (lambda r: img_all[r]), (lambda r: txt_all[r]), "pairs of --score"
    else:
        img_rows, txt_rows = store.pairs()
        get_img, get_txt, pairs = store.get, store.get, "store pairs"
    rows, scores, fixed = [], [], []
    for lo in range(0, len(img_rows), block):
        ir, tr = img_rows[lo : lo + block], txt_rows[lo : lo + block]
        img, txt = get_img(ir), get_txt(tr)
        sc = det.score(model, img, txt)
        bad = np.nonzero(sc >= threshold)[0]
        if len(bad):
            fixed.append(mitigate(model, img[bad], txt[bad], args.mitigate_concepts, args.beta).astype(np.float32))
            rows += [(int(tr[i]), int(ir[i])) for i in bad]
            scores += [float(sc[i]) for i in bad]
    emb = np.concatenate(fixed) if fixed else np.zeros((0, store.dim), np.float32)
    out = Path(args.out)
    table = out.with_suffix(".rows.csv")
    atomic_write_stream(out, lambda f: np.save(f, emb))

    def write_rows(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text_row", "image_row", "score"])
            w.writerows((t, i, f"{s:.6f}") for (t, i), s in zip(rows, scores))

    atomic_write(table, write_rows)
    return {"n_pairs": int(len(img_rows)), "n_flagged": len(rows), "pairs": pairs, "written": [str(out), str(table)]}
