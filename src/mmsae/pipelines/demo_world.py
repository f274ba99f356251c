"""`mmsae demo` on the scene world (its default): a learned embedding space with ground truth.

The world's pictures and captions (`mmsae.world`) are embedded by the small CLIP the project trained
on them (`mmsae/world/pretrained`, through `mmsae embed`'s own hf backend, as a user's CLIP would
be), SAEs are trained on those embeddings, their concepts named from the world's words plus
distractors through the model's text tower, and every analysis is scored against the attributes
each picture shows and each caption says (`mmsae.analysis.world_truth`). The scores use scenes
neither the CLIP nor the SAEs saw: the CLIP trained on seed 0, the SAEs train on the demo's world
(seed `WorldData.seed`), and the scores come from another `WorldData.probe_scenes` scenes of the
next seed, embedded in memory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.errors import MmsaeError
from mmsae.pipelines.common import (
    SINGLE_ARCHS,
    DemoConfig,
    Steps,
    compare_step,
    finish_run,
    index_run,
    name_concepts_into,
    pareto_step,
    prepare_out,
    run_footer,
    stability_runs,
    train_archs,
)

PRETRAINED = Path(__file__).resolve().parent.parent / "world" / "pretrained"
"""The world's CLIP that ships with the package (`mmsae world train` reproduces it)."""
STEER_STRENGTH = 0.5
"""Added to unit image embeddings along a unit concept direction (then renormalised): about a
30° turn, enough to move a picture's neighbours without replacing what it shows."""
STEERED_ATTRIBUTES = ("colour", "shape", "size", "position", "background")


@dataclass(frozen=True)
class WorldData:
    """The world the demo draws and scores on."""

    scenes: int = 8000
    """Scenes drawn into the run folder and embedded into its store (the SAEs' data)."""
    captions_per_scene: int = 2
    """Captions per scene in the store."""
    seed: int = 1
    """Seed of the demo's world: the shipped CLIP trained on seed 0, so these scenes are new to it."""
    probe_scenes: int = 2000
    """Scenes of seed `seed + 1`, embedded in memory, one caption each: every score is measured on
    them (new to the CLIP and to the SAEs)."""
    model: str = str(PRETRAINED)
    """Folder of the CLIP (a `mmsae world train` output)."""

    @classmethod
    def preset(cls, size: str) -> WorldData:
        return cls(scenes=2000, probe_scenes=1000) if size == "small" else cls()


def world_demo_config(size: str, **kw) -> DemoConfig:
    """The SAE sizes of the world demo: 128-d embeddings, a scene holding up to 19 attribute values.
    k = 32 because fewer active latents leave the values of a scene's smaller objects out of its code
    (docs/world.md compares k from 12 to 64); the slower rate over more epochs keeps fewer latents dead."""
    from mmsae.data.synthetic import SynthConfig

    common = dict(dict_size=512, k=32, l1_coef=1.0, images=False)
    if size == "small":
        return DemoConfig(SynthConfig(), epochs=20, batch_size=256, lr=3e-3, **common, **kw)
    return DemoConfig(SynthConfig(), epochs=60, batch_size=512, lr=1e-3, **common, **kw)


@dataclass
class Probe:
    """The probe scenes, their labels and their embeddings."""

    scenes: list
    captions: list
    image_NC: np.ndarray
    text_NC: np.ndarray
    img_ND: np.ndarray
    txt_ND: np.ndarray
    swapped_ND: np.ndarray
    """One more caption per scene, of the scene or of a copy with one value swapped (`swapped_captions`)."""
    hallucinated_N: np.ndarray
    """Whether that caption says a visual value its picture does not show."""
    changed_N: np.ndarray
    """The attribute a swapped caption changed ('' when not swapped)."""


def run_world_demo(
    cfg: DemoConfig,
    data: WorldData,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from mmsae.analysis.bridges import analyze_bridges
    from mmsae.analysis.modality import analyze_modality
    from mmsae.analysis.search import QUERY_POOL
    from mmsae.analysis.top_examples import write_top_examples
    from mmsae.backends.embed import EmbedConfig, embed
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.data.inputs import read_inputs
    from mmsae.data.store import EmbeddingStore
    from mmsae.train.clip import read_record, training_seed
    from mmsae.world import METADATA_FILE, vocabulary, write_world

    out = Path(out)
    if not cfg.archs or any(a not in SINGLE_ARCHS for a in cfg.archs):
        raise MmsaeError(f"--archs must name some of {', '.join(SINGLE_ARCHS)}; got {','.join(cfg.archs) or 'none'}")
    # the model is checked and loaded before the run folder is touched: a bad model replaces nothing
    model_dir = Path(data.model).expanduser().resolve()  # the store records it: absolute, not a hub name
    if not (model_dir / "config.json").is_file():
        raise MmsaeError(f"{model_dir} holds no CLIP model (config.json); train one with `mmsae world train`")
    if model_dir.is_relative_to(out.resolve()):
        raise MmsaeError(f"the model {model_dir} lies inside the run folder {out}, which the demo replaces; move it")
    size = image_size(model_dir)
    try:
        backend = load_backend(parse_model(f"hf:{model_dir}"))
    except MmsaeError as exc:
        if "needs transformers" in str(exc):
            raise MmsaeError(
                "the scene-world demo embeds with transformers: pip install 'mmsae[hf]' "
                "(or run `mmsae demo --data planted`, which does not need it)"
            ) from None
        raise MmsaeError(f"{model_dir} is not a loadable CLIP folder (a `mmsae world train` output): {exc}") from None
    trained_on = training_seed(model_dir)
    if trained_on in (data.seed, data.seed + 1) and log is not None:
        log(
            f"note: {model_dir.name} was trained on the scenes of seed {trained_on}, which the demo draws "
            f"(seeds {data.seed} and {data.seed + 1}): its scores are not on scenes new to the model"
        )
    prepare_out(out)
    analysis = out / "analysis"
    steps = Steps(8 + cfg.pareto + (cfg.stability_seeds > 1) + cfg.multimodal, log)
    t_start = time.perf_counter()

    steps(f"drawing {data.scenes:,} scenes of the world with {data.captions_per_scene} captions each")
    write_world(
        out / "world",
        data.scenes,
        data.seed,
        image_size=size,
        captions_per_scene=data.captions_per_scene,
        progress=progress,
    )

    steps(f"embedding pictures and captions with the world's CLIP ({model_dir.name})")
    inputs = read_inputs(str(out / "world" / METADATA_FILE))
    embed(inputs, backend, out / "store", EmbedConfig(num_workers=0, progress=progress), source=str(out / "world"))
    store = EmbeddingStore(out / "store")

    steps(f"training {len(cfg.archs)} SAEs ({', '.join(cfg.archs)}), F={cfg.dict_size}, k={cfg.k}")
    rows, models = train_archs(store, out, cfg, progress)
    main_arch = cfg.archs[0]
    sae = models[main_arch]

    steps(f"naming the {main_arch} SAE's concepts from the world's words and distractors; top examples")
    terms = vocabulary()
    names = name_concepts_into(
        sae, store, terms, "mmsae.world.vocabulary()", analysis / "names", encoder=backend, progress=progress
    )
    write_top_examples(sae, store, analysis / "top", k=QUERY_POOL, progress=progress)

    steps("modality scores and Bridge Scores")
    mod = analyze_modality(sae, store, out=analysis / "modality")
    br = analyze_bridges(sae, store, out=analysis / "bridges", top=50, names=[n.name for n in names])

    steps(f"embedding {data.probe_scenes:,} held-out probe scenes and scoring against their attributes")
    probe = embed_probe(backend, data, size)
    scores, image_table = score_against_world(sae, store, probe, [n.name for n in names], mod, br)
    scores["hallucination"] = {main_arch: hallucination_scores(sae, store, probe)}
    scores["steering"] = steering_scores(sae, probe, image_table)

    if cfg.pareto:
        scores["pareto"] = pareto_step(store, analysis / "pareto", cfg, main_arch, steps, progress, epochs=10)

    stability_F = None
    if cfg.stability_seeds > 1:
        steps(f"stability: {cfg.stability_seeds - 1} more {main_arch} SAEs with other seeds, matched by cosine")
        stab = stability_runs(store, sae, out / f"sae-{main_arch}", analysis / "stability", cfg, progress)
        scores["stability"] = {"mean": stab["stability"], "live": stab["stability_live"]}
        stability_F = np.array([c["stability"] for c in stab["per_concept"]])

    if cfg.multimodal:
        from mmsae.models.io import load_sae

        comparison = compare_step(
            store, out / "compare", cfg, steps, progress, "alignment, retrieval, hallucination on swapped captions"
        )
        for r in comparison["rows"]:
            m = load_sae(out / "compare" / r["model"])
            scores["hallucination"][r["model"]] = hallucination_scores(m, store, probe)
        scores["multimodal"] = {
            r["model"]: {k: r[k] for k in ("alignment_score", "i2t_recall@1", "t2i_recall@1", "fvu_image", "fvu_text")}
            for r in comparison["rows"]
        }

    scores["findings"] = papadimitriou_findings(scores, mod, stability_F)
    index_run(out, f"sae-{main_arch}", steps, progress)
    summary = {
        "data": "world",
        "store": str(out / "store"),
        "world": str(out / "world"),
        "model": str(model_dir),
        "clip": read_record(model_dir).get("measurements"),
        "rows": len(store),
        "dim": store.dim,
        "scenes": data.scenes,
        "probe_scenes": data.probe_scenes,
        "dict_size": cfg.dict_size,
        "k": cfg.k,
        "results": rows,
        "main_sae": str(out / f"sae-{main_arch}"),
        "world_scores": scores,
        "world_data": dataclasses.asdict(data),
        "out": str(out),
    }
    return finish_run(out, summary, steps, t_start, format_world_report)


def embed_probe(backend, data: WorldData, size: int) -> Probe:
    """The probe scenes (seed `data.seed + 1`), one caption each, embedded in memory."""
    from mmsae.world import caption_scene, image_matrix, render, sample_scenes, text_matrix
    from mmsae.world.captions import swapped_captions

    seed = data.seed + 1
    scenes = sample_scenes(data.probe_scenes, seed)
    captions = [caption_scene(s, seed, 1)[0] for s in scenes]
    img = backend.embed_images([render(s, size) for s in scenes], batch_size=256)
    txt = backend.embed_texts([c.text for c in captions])
    labelled = swapped_captions(scenes, seed)
    swapped = backend.embed_texts([lc.caption.text for lc in labelled])
    hallucinated = np.array([lc.hallucinated for lc in labelled])
    changed = np.array([lc.changed or "" for lc in labelled])
    return Probe(
        scenes, captions, image_matrix(scenes), text_matrix(captions), img, txt, swapped, hallucinated, changed
    )


def image_size(model_dir: Path) -> int:
    """The picture size the CLIP takes (its vision config's `image_size`)."""
    import json

    try:
        return int(json.loads((model_dir / "config.json").read_text())["vision_config"]["image_size"])
    except (OSError, ValueError, KeyError, TypeError):
        raise MmsaeError(f"{model_dir}/config.json names no vision_config.image_size: not a CLIP folder") from None


def _codes(model, x_ND: np.ndarray, modality: str) -> np.ndarray:
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.paired import as_paired

    z, _ = encode_decode(as_paired(model), np.asarray(x_ND, dtype=np.float32), modality, "cpu")
    return z.numpy()


def score_against_world(sae, store, probe: Probe, names: list[str | None], mod: dict, br: dict):
    """Sparse probing per modality, naming, modality buckets and bridge agreement on the probe
    scenes; and the image rows' probe table (steering starts from its latents)."""
    from sklearn.decomposition import PCA

    from mmsae.analysis import world_truth as wt
    from mmsae.world import attribute_values

    values = attribute_values()
    keys = [v.key for v in values]
    rng = np.random.default_rng(0)
    fit_rows = np.sort(rng.choice(len(store), min(len(store), 20000), replace=False))
    pca = PCA(random_state=0).fit(store.get(fit_rows))
    tables = {}
    for modality, x, y in (("image", probe.img_ND, probe.image_NC), ("text", probe.txt_ND, probe.text_NC)):
        tables[modality] = wt.sparse_probing(modality, _codes(sae, x, modality), pca.transform(x), x, y, keys)
    detects = wt.detecting_latents(list(tables.values()))
    word_of = {v.key: v.word for v in values}
    kind_of = {v.key: v.kind for v in values}
    buckets_F = [c["bucket"] for c in mod["per_concept"]]
    on_image = wt.best_value_by_latent(tables["image"])
    on_text = wt.best_value_by_latent(tables["text"])
    per_value: dict[str, float] = {}  # best on either side
    linear: dict[str, float] = {}
    for t in tables.values():
        for key, s, lin in zip(t.keys, t.sae_auroc, t.linear_auroc):
            per_value[key] = max(per_value.get(key, -1.0), s)
            linear[key] = max(linear.get(key, -1.0), lin if np.isfinite(lin) else -1.0)
    carried = [k for k, v in linear.items() if v >= wt.DETECTS]
    return {
        "probing": {m: t.to_json() for m, t in tables.items()},
        "values_detected": {
            "values": len(per_value),
            "detected": int(sum(v >= wt.DETECTS for v in per_value.values())),
            "share": float(np.mean([v >= wt.DETECTS for v in per_value.values()])) if per_value else float("nan"),
            "carried": len(carried),
            "detected_of_carried": int(sum(per_value[k] >= wt.DETECTS for k in carried)),
        },
        "naming": wt.naming_accuracy(detects, names, word_of),
        "modality_buckets": wt.modality_buckets(detects, buckets_F, kind_of),
        "bridges": wt.bridge_agreement(br["top"], on_image, on_text),
    }, tables["image"]


def hallucination_scores(model, store, probe: Probe) -> dict[str, Any]:
    """The concept-level detector against raw cosine on the probe scenes' swapped captions
    (`mmsae.world.captions.swapped_captions`), fitted on the store's matched pairs."""
    from sklearn.metrics import roc_auc_score

    from mmsae.analysis.hallucination import HallucinationDetector, clip_score, compare_with_clip_score

    txt, labels = probe.swapped_ND, probe.hallucinated_N
    img_rows, txt_rows = store.pairs()
    keep = np.random.default_rng(0).permutation(len(img_rows))[:10000]
    det = HallucinationDetector.fit(model, store.get(img_rows[keep]), store.get(txt_rows[keep]))
    sae_N, cos_N = det.score(model, probe.img_ND, txt), clip_score(probe.img_ND, txt)
    res = compare_with_clip_score(sae_N, cos_N, labels)
    res["hallucinated_share"] = float(labels.mean())
    # which swaps each method sees: hallucinated captions of one changed attribute against every true caption
    res["auroc_by_attribute"] = {}
    for attr in sorted(set(probe.changed_N[labels])):
        sel = ~labels | (labels & (probe.changed_N == attr))
        res["auroc_by_attribute"][attr] = {
            "n": int((labels & (probe.changed_N == attr)).sum()),
            "sae": float(roc_auc_score(labels[sel], sae_N[sel])),
            "clip_score": float(roc_auc_score(labels[sel], -cos_N[sel])),  # low cosine flags
        }
    res["winner"] = "sae" if res["sae"]["f1"] > res["clip_score"]["f1"] else "clip_score"
    return res


def steering_scores(sae, probe: Probe, image_table) -> dict[str, Any]:
    """Per attribute, the mean over its values of the share of the 5 nearest probe captions saying the
    value, for probe pictures that do not show it, before and after steering along the image-side
    latent that detects it best (only latents detecting it at AUROC ≥ 0.9)."""
    from mmsae.analysis import world_truth as wt
    from mmsae.analysis.steering import concept_direction
    from mmsae.world import attribute_values

    col = {v.key: c for c, v in enumerate(attribute_values())}
    per: dict[str, list[tuple[float, float]]] = {}
    for key, auc, f in zip(image_table.keys, image_table.sae_auroc, image_table.sae_latent):
        attr = key.split("=", 1)[0]
        if attr not in STEERED_ATTRIBUTES or auc < wt.DETECTS:
            continue
        absent = ~probe.image_NC[:, col[key]]
        if absent.sum() < 20:
            continue
        before, after = wt.steering_shift(
            probe.img_ND[absent],
            concept_direction(sae, f, "image"),
            STEER_STRENGTH,
            probe.txt_ND,
            probe.text_NC[:, col[key]],
        )
        per.setdefault(attr, []).append((before, after))
    return {
        "strength": STEER_STRENGTH,
        "by_attribute": {
            a: {
                "values": len(v),
                "before": float(np.mean([b for b, _ in v])),
                "after": float(np.mean([x for _, x in v])),
            }
            for a, v in per.items()
        },
    }


def papadimitriou_findings(scores: dict[str, Any], mod: dict, stability_F: np.ndarray | None) -> list[dict[str, Any]]:
    """Each finding of Papadimitriou et al. 2025 measured on this space: a number and whether it
    holds. `stability_F`: each concept's matched cosine across seeds (None: no stability runs)."""
    from mmsae.analysis import world_truth as wt

    out = []
    if "pareto" in scores:
        r2, arch = scores["pareto"]["r2"], scores["pareto"]["arch"]
        sae_r2 = r2.get(arch, float("nan"))
        linear = {m: v for m, v in r2.items() if m in ("pca", "nmf")}
        best = max(linear.values()) if linear else float("nan")
        out.append(
            {
                "finding": "SAEs beat linear methods at equal sparsity",
                "measure": f"held-out R² at L0 ≤ 8: {arch} {sae_r2:.3f} vs best of PCA/NMF {best:.3f}",
                "holds": bool(sae_r2 > best),
            }
        )
    if stability_F is not None:
        freq = np.array([(c["frequency_image"] + c["frequency_text"]) / 2 for c in mod["per_concept"]])
        rho = wt.spearman(freq, stability_F)
        out.append(
            {
                "finding": "frequent concepts are more stable across seeds",
                "measure": f"Spearman(frequency, matched cosine) over concepts = {rho:.2f}",
                "holds": bool(rho > 0.1),
            }
        )
    live = [c for c in mod["per_concept"] if c["bucket"] != "dead"]
    unimodal = float(np.mean([c["bucket"] != "bimodal" for c in live])) if live else float("nan")
    orth = mod["cos_with_modality_direction"]
    out.append(
        {
            "finding": "most concepts are nearly unimodal",
            "measure": f"{unimodal:.1%} of live concepts image-only or text-only (μ > 0.9 or < 0.1)",
            "holds": bool(unimodal > 0.5),
        }
    )
    out.append(
        {
            "finding": "yet nearly orthogonal to the modality-probe direction",
            "measure": f"mean |cos(concept, probe)| {orth['mean']:.3f}; "
            f"{orth['fraction_nearly_orthogonal']:.1%} below 0.1",
            "holds": bool(orth["fraction_nearly_orthogonal"] > 0.5),
        }
    )
    b = scores["bridges"]
    if b["labelled"]:
        measure = (
            f"{b['same_attribute']:.1%} of the {b['labelled']} significant top bridges whose two latents each "
            f"detect a value join one attribute ({b['same_value']:.1%} the same value)"
        )
    else:
        measure = (
            f"none of the {b['significant']} significant top bridges joins two latents that each detect a value "
            "(a value seen and said is one bimodal latent here, not an image latent bridged to a text latent)"
        )
    out.append(
        {
            "finding": "bridges link an image-side and a text-side concept of the same attribute",
            "measure": measure,
            "holds": bool(b["labelled"] > 0 and b["same_attribute"] > 0.5),
        }
    )
    return out


def format_world_report(s: dict[str, Any]) -> str:
    sc = s["world_scores"]
    lines = [
        f"mmsae demo (scene world): {s['scenes']:,} scenes embedded by the world's CLIP "
        f"({s['rows']:,} rows, {s['dim']}-d), SAEs with F={s['dict_size']}, k={s['k']}",
    ]
    c = s.get("clip")
    if c:

        def f(key: str) -> str:  # a measurement may be missing or null (no one-object scene, say)
            v = c.get(key)
            return "–" if v is None else f"{v:.3f}"

        lines.append(
            f"the CLIP, on {c.get('n_scenes', 0):,} held-out scenes: R@1 image→text {f('image_to_text_r1')}, "
            f"text→image {f('text_to_image_r1')}; zero-shot colour {f('zero_shot_colour')}, shape "
            f"{f('zero_shot_shape')}; modality gap {f('gap')} (separability {f('separability')})"
        )
    lines += [
        "held-out (validation split) metrics:",
        "",
        f"{'arch':<12}{'FVU':>9}{'FVU img':>9}{'FVU txt':>9}{'L0':>7}{'dead':>7}{'cos':>7}{'time s':>8}",
    ]
    for r in s["results"]:
        lines.append(
            f"{r['arch']:<12}{r['fvu']:>9.4f}{r['fvu_image']:>9.4f}{r['fvu_text']:>9.4f}"
            f"{r['l0']:>7.1f}{r['dead_fraction']:>7.3f}{r['cosine']:>7.3f}{r['train_seconds']:>8.1f}"
        )
    main = Path(s["main_sae"]).name
    lines += [
        "",
        f"{main} scored against the attributes of {s['probe_scenes']:,} held-out scenes (one caption each):",
        f"  sparse probing (best single AUROC per value): {'rows':<7}{'values':>7}{'SAE':>7}{'PCA':>7}{'raw':>7}"
        f"{'SAE ≥ 0.9':>11}{'linear':>8}",
    ]
    for m, t in sc["probing"].items():
        u = t["summary"]
        lines.append(
            f"  {'':<47}{m:<7}{u['values']:>7}{u['sae_mean']:>7.3f}{u['pca_mean']:>7.3f}{u['raw_mean']:>7.3f}"
            f"{u['share_detected']:>11.1%}{u.get('linear_mean', float('nan')):>8.3f}"
        )
    for m, t in sc["probing"].items():
        lines.append(
            f"  {m} rows by attribute (SAE / PCA, values detected): "
            + ", ".join(
                f"{a} {b['sae_mean']:.2f}/{b['pca_mean']:.2f} ({b['detected']}/{b['values']})"
                for a, b in t["by_attribute"].items()
            )
        )
    vd = sc["values_detected"]
    lines.append(
        f"  values with a latent at AUROC ≥ 0.9 on either side: {vd['detected']}/{vd['values']} ({vd['share']:.1%})"
    )
    if "carried" in vd:
        lines.append(
            f"  values a logistic regression on the whole embedding reads at AUROC ≥ 0.9 (what the space carries "
            f"linearly): {vd['carried']}/{vd['values']}; the SAE detects {vd['detected_of_carried']} of them"
        )
    n = sc["naming"]
    lines.append(
        f"  naming: {n['correct']}/{n['latents']} detecting latents named by their value's word ({n['accuracy']:.1%}); "
        + ", ".join(f"{a} {v['accuracy']:.0%}" for a, v in n["by_attribute"].items())
    )
    mb = sc["modality_buckets"]
    lines.append(
        "  modality buckets of detecting latents: "
        + "; ".join(
            f"{k} values → image {r['image']}, text {r['text']}, bimodal {r['bimodal']}"
            + (f" ({r['accuracy']:.0%} {r['expected']}-only as expected)" if "accuracy" in r and r["latents"] else "")
            for k, r in mb.items()
        )
    )
    lines.append("  hallucination (swapped shape/colour/position words; thresholds fit on half, scored on half):")
    for name, h in sc["hallucination"].items():
        lines.append(
            f"    {name:<12} SAE P/R/F1/AUROC {h['sae']['precision']:.3f}/{h['sae']['recall']:.3f}/"
            f"{h['sae']['f1']:.3f}/{h['sae']['auroc']:.3f}   raw cosine {h['clip_score']['precision']:.3f}/"
            f"{h['clip_score']['recall']:.3f}/{h['clip_score']['f1']:.3f}/{h['clip_score']['auroc']:.3f}"
            f"   → {'SAE' if h['winner'] == 'sae' else 'raw cosine'} wins on F1"
        )
        lines.append(
            "      AUROC by swapped attribute, all rows (SAE / raw cosine): "
            + ", ".join(f"{a} {v['sae']:.3f} / {v['clip_score']:.3f}" for a, v in h["auroc_by_attribute"].items())
        )
    st = sc["steering"]
    lines.append(
        f"  steering (+{st['strength']} × concept direction on pictures without the value; share of 5 nearest "
        "captions saying it): "
        + ", ".join(f"{a} {v['before']:.2f}→{v['after']:.2f}" for a, v in st["by_attribute"].items())
    )
    if "multimodal" in sc:
        lines += ["", f"  {'model':<12}{'align':>8}{'i→t R@1':>9}{'t→i R@1':>9}"]
        for name, r in sc["multimodal"].items():
            lines.append(f"  {name:<12}{r['alignment_score']:>8.2f}{r['i2t_recall@1']:>9.3f}{r['t2i_recall@1']:>9.3f}")
    lines += ["", "findings of Papadimitriou et al. 2025 on this space:"]
    for f in sc["findings"]:
        lines.append(f"  [{'holds' if f['holds'] else 'does not hold'}] {f['finding']}: {f['measure']}")
    lines += [
        "",
        *run_footer(s),
    ]
    return "\n".join(lines)
