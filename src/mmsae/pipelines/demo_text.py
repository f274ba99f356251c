"""`mmsae demo --data coco-captions`: the demo on real text. COCO captions embedded with MiniLM
(all-MiniLM-L6-v2, the one real encoder that installs offline), SAEs trained on them, their
concepts named from a vocabulary, their top captions found, stability across seeds, the report
and the explorer. Text only, so there is no modality or bridge analysis and no planted truth:
the check here is whether a concept's name appears in its top captions.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.data.synthetic import SynthConfig
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write
from mmsae.pipelines.common import (
    DemoConfig,
    Steps,
    finish_run,
    index_run,
    name_concepts_into,
    prepare_out,
    stability_runs,
    train_archs,
)

COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
CAPTIONS_IN_ZIP = "annotations/captions_val2017.json"


def shared_data() -> Path | None:
    """The folder of openly licensed real data named by MMSAE_SHARED_DATA, if set (it holds
    coco-val2017-captions/ and splice/vocab/; the repository's tests use the same variable)."""
    value = os.environ.get("MMSAE_SHARED_DATA")
    return Path(value) if value else None


SHARED_CAPTIONS = Path("coco-val2017-captions") / "captions_val2017.json"


def shared_roots() -> list[Path]:
    """$MMSAE_SHARED_DATA if set, then ../shared/data (beside a clone, where the project's data lives)."""
    return [r for r in (shared_data(), Path("..") / "shared" / "data") if r is not None]


def caption_candidates() -> list[Path]:
    """Where the demo looks for COCO captions when --captions is not given: the shared roots, then
    the download cache."""
    found = [r / SHARED_CAPTIONS for r in shared_roots()]
    return [*found, download_cache() / CAPTIONS_IN_ZIP]


def download_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmsae" / "coco"


def default_vocabulary() -> Path | None:
    """SpLiCE's MSCOCO vocabulary beside the captions (under $MMSAE_SHARED_DATA or ../shared/data)."""
    return next((p for r in shared_roots() if (p := r / "splice" / "vocab" / "mscoco.txt").is_file()), None)


def default_captions() -> Path | None:
    return next((p for p in caption_candidates() if p.is_file()), None)


def read_coco_captions(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(captions, image ids) from a COCO captions JSON, in file order."""
    try:
        ann = json.loads(Path(path).read_text())["annotations"]
        texts = [str(a["caption"]).strip() for a in ann]
        ids = np.array([int(a["image_id"]) for a in ann], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MmsaeError(f"{path}: not a COCO captions JSON ({exc})") from None
    if not texts:
        raise MmsaeError(f"{path} holds no captions")
    return texts, ids


def download_captions(dest: Path) -> Path:
    """COCO val2017 captions from cocodataset.org (the 241 MB annotations zip), where a network exists."""
    import urllib.request
    import zipfile

    dest.mkdir(parents=True, exist_ok=True)
    zpath = dest / "annotations_trainval2017.zip"
    try:
        urllib.request.urlretrieve(COCO_ANNOTATIONS_URL, zpath)
        target = dest / CAPTIONS_IN_ZIP
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zpath) as z:  # a killed extraction must not leave a truncated file to find next time
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(z.read(CAPTIONS_IN_ZIP)))
    except (OSError, zipfile.BadZipFile) as exc:
        looked = ", ".join(str(p) for p in caption_candidates()[:-1])
        raise MmsaeError(
            f"no COCO captions found (looked in {looked}) and the download from {COCO_ANNOTATIONS_URL} "
            f"failed ({exc}); pass --captions PATH to a COCO captions JSON, or set MMSAE_SHARED_DATA to the "
            "folder holding coco-val2017-captions/"
        ) from None
    finally:
        zpath.unlink(missing_ok=True)
    return dest / CAPTIONS_IN_ZIP


def caption_vocabulary(texts: list[str], n: int = 2000) -> list[str]:
    """The captions' most frequent content words, when no vocabulary file is given."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = Counter(w.strip(".,;:!?\"'()").lower() for t in texts for w in t.split())
    return [w for w, _ in words.most_common() if len(w) >= 3 and w.isalpha() and w not in ENGLISH_STOP_WORDS][:n]


def run_text_demo(
    out: str | Path,
    captions: str | None = None,
    vocab: str | None = None,
    size: str = "default",
    archs: tuple[str, ...] = ("topk",),
    stability: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from mmsae.analysis.naming import name_in_text, read_vocabulary
    from mmsae.analysis.search import QUERY_POOL
    from mmsae.analysis.top_examples import texts_of, write_top_examples
    from mmsae.backends.base import MINILM_ID
    from mmsae.backends.minilm import MiniLMTextEncoder
    from mmsae.data.store import StoreWriter

    out = Path(out)
    path = Path(captions) if captions else default_captions()
    if captions and not path.is_file():
        raise MmsaeError(f"--captions {captions}: no such file")
    cfg = DemoConfig(
        SynthConfig(),
        dict_size=1536 if size == "default" else 768,
        k=16,
        l1_coef=1.0,
        epochs=20 if size == "default" else 15,
        batch_size=1024 if size == "default" else 256,
        lr=3e-3,
        archs=archs,
        stability_seeds=3 if stability else 0,
        multimodal=False,
        images=False,
    )
    steps = Steps(5 + stability, log)
    t_start = time.perf_counter()
    # Inputs first, the run folder after: a failed start neither leaves a folder nor replaces the last run.
    if path is None:
        path = download_captions(download_cache())
    texts, ids = read_coco_captions(path)
    if size == "small":
        keep = np.isin(ids, np.unique(ids)[:1000])
        texts, ids = [t for t, k in zip(texts, keep) if k], ids[keep]
    enc = MiniLMTextEncoder()
    prepare_out(out)
    steps(f"embedding COCO captions from {path} with MiniLM")
    emb = enc.embed_texts(texts, progress=progress)
    with StoreWriter(out / "store", dim=emb.shape[1], model_id=MINILM_ID, preprocessing={"l2_normalized": True}) as w:
        w.append(emb, "text", pair_id=ids, source=[f"coco:{i}" for i in ids], text=texts)
    from mmsae.data.store import EmbeddingStore

    store = EmbeddingStore(out / "store")

    steps(f"training {len(archs)} SAE(s) ({', '.join(archs)}), F={cfg.dict_size}, k={cfg.k}")
    rows, models = train_archs(store, out, cfg, progress)
    sae = models[archs[0]]

    steps("naming concepts and finding their top captions")
    if vocab:
        terms = read_vocabulary(vocab)
    elif default_vocabulary() is not None:
        vocab = str(default_vocabulary())
        terms = read_vocabulary(vocab)
    else:
        terms, vocab = caption_vocabulary(texts), "(frequent caption words)"
    analysis = out / "analysis"
    names = name_concepts_into(sae, store, terms, vocab, analysis / "names", encoder=enc, progress=progress)
    _, tops = write_top_examples(sae, store, analysis / "top", k=QUERY_POOL, progress=progress)
    top_texts = texts_of(store, tops, "text")
    live = [c for c in range(len(names)) if names[c].name and top_texts.get(c)]
    in_top = [np.mean([name_in_text(names[c].name, t) for t in top_texts[c][:10]]) for c in live]
    scores: dict[str, Any] = {
        "naming": {"named_live": len(live), "name_in_top_captions": float(np.mean(in_top)) if in_top else float("nan")}
    }
    if stability:
        steps(f"stability: {cfg.stability_seeds - 1} more {archs[0]} SAEs with other seeds")
        st = stability_runs(store, sae, out / f"sae-{archs[0]}", analysis / "stability", cfg, progress)
        scores["stability"] = {"mean": st["stability"], "live": st["stability_live"]}
    index_run(out, f"sae-{archs[0]}", steps, progress)
    summary = {
        "data": "coco-captions",
        "captions": str(path),
        "store": str(out / "store"),
        "rows": len(store),
        "dim": store.dim,
        "dict_size": cfg.dict_size,
        "k": cfg.k,
        "results": rows,
        "scores": scores,
        "main_sae": str(out / f"sae-{archs[0]}"),
        "out": str(out),
    }
    return finish_run(out, summary, steps, t_start, format_text_report)


def format_text_report(s: dict[str, Any]) -> str:
    lines = [
        f"mmsae demo (coco-captions): {s['rows']:,} COCO captions embedded with MiniLM ({s['dim']}-d), "
        f"SAEs with F={s['dict_size']}, k={s['k']}",
        "",
        f"{'arch':<12}{'FVU':>9}{'L0':>7}{'dead':>7}{'cos':>7}{'time s':>8}",
    ]
    for r in s["results"]:
        lines.append(
            f"{r['arch']:<12}{r['fvu']:>9.4f}{r['l0']:>7.1f}{r['dead_fraction']:>7.3f}{r['cosine']:>7.3f}"
            f"{r['train_seconds']:>8.1f}"
        )
    n = s["scores"]["naming"]
    lines += [
        "",
        f"names: {n['named_live']} live concepts named; on average {n['name_in_top_captions']:.1%} of a "
        "concept's top-10 captions contain its name (or a form of it)",
    ]
    if "stability" in s["scores"]:
        lines.append(f"stability: {s['scores']['stability']['mean']:.3f} mean matched cosine across seeds")
    lines += [
        "",
        f"total {s['seconds']:.0f} s. Run folder: {s['out']}",
        f"  report:   {Path(s['out']) / 'report.html'}",
        f"  explore:  mmsae explore {s['out']}",
    ]
    return "\n".join(lines)
