"""`embed`: images and captions -> a store of their embeddings, resumable and distributed.

Each rank takes a contiguous part of the images and of the captions and writes them to its own
staging store (`OUT/.embed-staging/JOB-wW/rank-R/`), committing every `shard_rows` rows with
the number of input items used up, so a killed run restarted with the same command continues
after the last commit. When every rank is done, rank 0 appends the parts to `OUT` in input
order (all images, then all captions, rank by rank): the store equals a single-process run row
for row, whatever the number of ranks. A finished job is recorded in `OUT`'s manifest, so
re-running it changes nothing.

Images are decoded and preprocessed in DataLoader workers; the model runs batched under
`torch.inference_mode`, with fp16/bf16 autocast on a GPU. An image that cannot be read is
skipped, counted and listed in `OUT/embed-report.json`; it is never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mmsae.backends.base import BACKEND_KEY, TOKENS_KEY, Backend
from mmsae.backends.tokens import TokenBackend, TokenConfig
from mmsae.data.images import IMAGE_ROOT_KEY
from mmsae.data.inputs import EmbedInputs, ImageItem, TextItem
from mmsae.data.manifest import MANIFEST_NAME
from mmsae.data.store import EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError
from mmsae.fileio import write_json_atomic

STAGING = ".embed-staging"
REPORT_NAME = "embed-report.json"


@dataclass(frozen=True)
class EmbedConfig:
    """How to run the extraction."""

    batch_size: int = 64
    """Images per forward pass."""
    text_batch_size: int = 256
    """Captions per forward pass."""
    num_workers: int = -1
    """DataLoader worker processes decoding and preprocessing images; -1: one per core, up to 8."""
    normalize: bool = True
    """L2-normalise every embedding (recorded in the manifest as `l2_normalized`)."""
    dtype: str | None = None
    """On-disk dtype: float32 or float16; None: the target store's own dtype (float32 for a new store)."""
    shard_rows: int = 16384
    """Rows per committed shard: the most work a kill can lose."""
    modalities: tuple[str, ...] = ("image", "text")
    """Which sides of the input to embed."""
    tokens: TokenConfig | None = None
    """Read a tower's hidden states at one layer, one row per token (`mmsae.backends.tokens`),
    instead of the pooled embeddings: the vision tower's of the pictures, or (`tower="text"`) the
    text tower's of the captions."""
    progress: bool = True
    """Progress bars (rank 0 only)."""


@dataclass
class EmbedReport:
    """What an extraction did; written to `OUT/embed-report.json` (one entry per job)."""

    store: str
    """The store folder."""
    model_id: str
    """The backend's id, as recorded in the manifest."""
    layout: str
    """Input layout (folder, table, coco, text)."""
    images_in: int
    """Images listed in the input (and selected by --modality)."""
    texts_in: int
    """Captions listed, after dropping repeats of (caption, pair)."""
    rows_written: int
    """Rows this job added to the store."""
    images_skipped: int
    """Images that could not be read; each is in `skipped`."""
    duplicate_texts: int
    """Repeats of the same caption for the same pair, dropped."""
    resumed_items: int
    """Items (on rank 0) already committed by an earlier, interrupted run."""
    world_size: int
    """Processes that shared the work."""
    seconds: float
    """Wall time of this call."""
    counts: dict = field(default_factory=dict)
    """Rows per modality in the whole store afterwards."""
    skipped: list = field(default_factory=list)
    """One {item, path, source, reason} per unreadable image."""
    already_done: bool = False
    """True when the job had finished before and nothing was done."""


def job_key(inputs: EmbedInputs, backend: Backend, cfg: EmbedConfig, source: str) -> str:
    """Fingerprint of everything that decides the rows: same command, same key."""
    h = hashlib.sha256()
    parts = [
        source,
        inputs.layout,
        inputs.image_root,
        backend.model_id,
        backend.spec.to_json(),
        cfg.normalize,
        cfg.dtype,
        list(cfg.modalities),
        None if cfg.tokens is None else cfg.tokens.to_json(),
        len(inputs.images),
        len(inputs.texts),
    ]
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    for it in inputs.images[:: max(1, len(inputs.images) // 64)]:
        h.update(it.path.encode())
    src = Path(source)
    if src.is_file():
        st = src.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    return "embed:" + h.hexdigest()[:16]


def _split(n: int, rank: int, world: int) -> slice:
    return slice(n * rank // world, n * (rank + 1) // world)


# --- images: decoded in workers ---------------------------------------------------------------
class _ImageDataset:
    """Item i -> (i, preprocessed tensor or None, why it failed)."""

    def __init__(self, items: Sequence[ImageItem], transform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.items[i].path) as im:
                im.load()
                return i, self.transform(im.convert("RGB")), None
        except FileNotFoundError:
            return i, None, "missing file"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            return i, None, f"{type(exc).__name__}: {str(exc)[:160]}"
        except Image.DecompressionBombError as exc:
            return i, None, f"DecompressionBombError: {str(exc)[:160]}"


def _collate(batch):
    from torch.utils.data import default_collate

    ok = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, why) for i, x, why in batch if x is None]
    pixels = default_collate([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], pixels, failed


def _worker_init(_):
    import torch

    torch.set_num_threads(1)  # decoding is per-image; threads belong to the model


def _num_workers(cfg: EmbedConfig) -> int:
    if cfg.num_workers >= 0:
        return cfg.num_workers
    return max(1, min(8, os.cpu_count() or 1))


# --- one rank's part ------------------------------------------------------------------------
class _Part:
    """One rank's staging store and the skipped-image list that commits with it."""

    def __init__(self, root: Path, backend: Backend, cfg: EmbedConfig, preprocessing: dict):
        self.root = root
        self.skipped_path = root / "skipped.json"
        self.skipped: dict[int, dict] = {}
        if self.skipped_path.exists():
            self.skipped = {int(k): v for k, v in json.loads(self.skipped_path.read_text()).items()}
        self.writer = StoreWriter(
            root,
            dim=backend.dim,
            dtype=cfg.dtype,
            model_id=backend.model_id,
            preprocessing=preprocessing,
            shard_rows=cfg.shard_rows,
            job="part",
            before_commit=self._save_skipped,
        )

    def _save_skipped(self) -> None:
        write_json_atomic(self.skipped_path, {str(k): v for k, v in sorted(self.skipped.items())})


def _embed_part(
    backend: Backend,
    images: list[ImageItem],
    texts: list[TextItem],
    first_image: int,
    part: _Part,
    cfg: EmbedConfig,
    show: bool,
    first_text: int = 0,
) -> int:
    """Embed this rank's items after the ones already committed; returns how many were resumed."""
    import torch
    from tqdm.auto import tqdm

    writer = part.writer
    done = writer.rows_done
    img_done, txt_done = min(done, len(images)), max(0, done - len(images))
    if img_done < len(images):
        todo = images[img_done:]
        bar = tqdm(total=len(images), initial=img_done, desc="images", unit="img", disable=not show)
        loader = torch.utils.data.DataLoader(
            _ImageDataset(todo, backend.image_transform()),
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=_num_workers(cfg),
            collate_fn=_collate,
            worker_init_fn=_worker_init,
            pin_memory=str(backend.device).startswith("cuda"),
            persistent_workers=False,
        )
        for idx, pixels, failed in loader:
            for i, why in failed:
                it = todo[i]
                part.skipped[first_image + img_done + i] = {"path": it.path, "source": it.source, "reason": why}
            if idx:
                if isinstance(backend, TokenBackend):  # several rows per picture
                    base = first_image + img_done  # todo[i] is picture base + i of the input
                    emb, image_R, extra = backend.image_rows(pixels, [base + i for i in idx], cfg.normalize)
                    sel = [todo[i - base] for i in image_R]
                else:
                    emb, extra = backend.finish(backend.encode_images(pixels), cfg.normalize), None
                    sel = [todo[i] for i in idx]
                writer.append(
                    emb,
                    "image",
                    pair_id=[it.pair_id for it in sel],
                    source=[it.source for it in sel],
                    consumed=len(idx) + len(failed),
                    extra=extra,
                )
            else:
                writer.append(np.empty((0, backend.dim), np.float32), "image", consumed=len(failed))
            bar.update(len(idx) + len(failed))
        bar.close()
    # one shard never mixes images and captions: the merge orders shards by modality
    writer.flush()
    if txt_done < len(texts):
        todo_t = texts[txt_done:]
        bar = tqdm(total=len(texts), initial=txt_done, desc="texts", unit="text", disable=not show)
        for s in range(0, len(todo_t), cfg.text_batch_size):
            batch = todo_t[s : s + cfg.text_batch_size]
            if isinstance(backend, TokenBackend):  # a text tower's rows: several per caption
                base = first_text + txt_done + s  # batch[i] is caption base + i of the input
                emb, text_R, extra, shown = backend.text_rows(
                    [t.text for t in batch], [base + i for i in range(len(batch))], cfg.normalize
                )
                sel = [batch[i] for i in text_R]
            else:
                unique = list(dict.fromkeys(t.text for t in batch))  # identical captions are embedded once
                emb_U = backend.finish(backend.encode_texts(backend.tokenize(unique)), cfg.normalize)
                where = {t: j for j, t in enumerate(unique)}
                emb, sel, shown, extra = emb_U[[where[t.text] for t in batch]], batch, [t.text for t in batch], None
            writer.append(
                emb,
                "text",
                pair_id=[t.pair_id for t in sel],
                source=[t.source for t in sel],
                text=shown,
                consumed=len(batch),
                extra=extra,
            )
            bar.update(len(batch))
        bar.close()
    writer.flush()
    return done


# --- the whole job --------------------------------------------------------------------------
def embed(
    inputs: EmbedInputs,
    backend: Backend,
    out: str | os.PathLike,
    cfg: EmbedConfig = EmbedConfig(),
    *,
    source: str = "",
    rank: int = 0,
    world_size: int = 1,
    barrier=None,
) -> EmbedReport:
    """Embed `inputs` with `backend` into the store at `out` (created or appended to).

    With `world_size` > 1 every rank calls this with its `rank` and a `barrier` callable
    (torch.distributed.barrier); rank 0 merges the parts and returns the full report.
    """
    t0 = time.perf_counter()
    out = Path(out)
    want = [m for m in cfg.modalities if m in ("image", "text")]
    if cfg.tokens is not None:  # a tower's token rows: pictures or captions, in the tower's width
        modality = "text" if cfg.tokens.tower == "text" else "image"
        if modality not in want:
            raise MmsaeError(
                f"--layer/--tokens read the {cfg.tokens.tower} tower here: they embed "
                f"{'captions' if modality == 'text' else 'pictures'}, not --modality {want[0] if want else '?'}"
            )
        if not isinstance(backend, TokenBackend):
            backend = TokenBackend(backend, cfg.tokens)
        want = [modality]
    if "image" in want and backend.text_only:
        if inputs.images and "text" not in want:
            raise MmsaeError(f"{backend.model_id} is text-only and cannot embed images; use a vision-language model")
        want = [m for m in want if m != "image"]
    images = inputs.images if "image" in want else []
    texts = inputs.texts if "text" in want else []
    if not images and not texts:
        raise MmsaeError(
            "nothing to embed: the input has no "
            + (" or ".join(want) or "selected modality")
            + " items"
            + (" (the model is text-only)" if backend.text_only and inputs.images else "")
        )
    if cfg.dtype is None:  # a new store of token rows (many per picture) is half-size float16
        existing = EmbeddingStore(out).manifest if (out / MANIFEST_NAME).exists() else None
        fresh = "float16" if isinstance(backend, TokenBackend) else "float32"
        cfg = replace(cfg, dtype=existing.dtype if existing is not None and existing.n_rows else fresh)
    key = job_key(inputs, backend, cfg, source)
    preprocessing = {
        "l2_normalized": cfg.normalize,
        BACKEND_KEY: backend.spec.to_json(),
        "precision": backend.precision,
    }
    if images and inputs.image_root:
        preprocessing[IMAGE_ROOT_KEY] = inputs.image_root
    if isinstance(backend, TokenBackend):
        preprocessing[TOKENS_KEY] = backend.preprocessing()
    _check_target(out, backend, cfg, preprocessing)
    total = len(images) + len(texts)
    if _job_done(out, key) >= total:
        report = _read_report(out, key)
        report.already_done, report.seconds = True, time.perf_counter() - t0
        return report
    if isinstance(backend, TokenBackend) and (out / MANIFEST_NAME).exists() and EmbeddingStore(out).manifest.n_rows:
        raise MmsaeError(
            f"{out} already holds another input's token rows, numbered by picture (or caption) from 0: embed "
            "this input into a new store"
        )

    staging = out / STAGING / f"{key.split(':')[1]}-w{world_size}"
    part = _Part(staging / f"rank-{rank:05d}", backend, cfg, preprocessing)
    img_sl, txt_sl = _split(len(images), rank, world_size), _split(len(texts), rank, world_size)
    try:
        resumed = _embed_part(
            backend,
            images[img_sl],
            texts[txt_sl],
            img_sl.start,
            part,
            cfg,
            show=cfg.progress and rank == 0,
            first_text=txt_sl.start,
        )
    finally:
        part.writer.release()
    if barrier is not None:
        barrier()
    if rank != 0:
        return EmbedReport(
            str(out),
            backend.model_id,
            inputs.layout,
            len(images),
            len(texts),
            0,
            0,
            inputs.duplicate_texts,
            resumed,
            world_size,
            time.perf_counter() - t0,
        )
    report = _merge(
        out, staging, world_size, key, total, backend, cfg, preprocessing, local_pair_ids=not inputs.pair_ids_given
    )
    report.layout, report.images_in, report.texts_in = inputs.layout, len(images), len(texts)
    report.duplicate_texts, report.resumed_items = inputs.duplicate_texts, resumed
    report.seconds = time.perf_counter() - t0
    _write_report(out, key, report)
    shutil.rmtree(staging, ignore_errors=True)
    if (out / STAGING).is_dir() and not any((out / STAGING).iterdir()):
        (out / STAGING).rmdir()
    return report


def _check_target(out: Path, backend: Backend, cfg: EmbedConfig, preprocessing: dict) -> None:
    """Appending to an existing store must keep it one space, one normalisation, one image root."""
    if not (out / MANIFEST_NAME).exists():
        return
    m = EmbeddingStore(out).manifest
    if m.n_rows == 0:
        return
    if m.dim != backend.dim or m.model_id not in ("unknown", backend.model_id):
        makes = f"makes {backend.dim}-d ones" if m.dim != backend.dim else "is another model or reading"
        raise MmsaeError(
            f"{out} holds {m.dim}-d embeddings of {m.model_id!r}; {backend.model_id} {makes}: embed into a new store"
        )
    if m.dtype != cfg.dtype:
        raise MmsaeError(
            f"{out} holds {m.dtype} embeddings; pass --dtype {m.dtype} (or leave --dtype out) to append, "
            "or embed into a new store"
        )
    if "l2_normalized" in m.preprocessing and m.preprocessing["l2_normalized"] != preprocessing["l2_normalized"]:
        raise MmsaeError(
            f"{out} holds embeddings with l2_normalized={m.preprocessing['l2_normalized']}; "
            "use the same --normalize setting or a new store"
        )
    if _reading(m.preprocessing.get(TOKENS_KEY)) != _reading(preprocessing.get(TOKENS_KEY)):
        raise MmsaeError(
            f"{out} holds rows read as {m.preprocessing.get(TOKENS_KEY) or 'pooled embeddings'}; these are read as "
            f"{preprocessing.get(TOKENS_KEY) or 'pooled embeddings'}: embed into a new store"
        )
    root, new_root = m.preprocessing.get(IMAGE_ROOT_KEY), preprocessing.get(IMAGE_ROOT_KEY)
    if root and new_root and Path(root).resolve() != Path(new_root).resolve():
        raise MmsaeError(f"{out} holds images under {root}; these are under {new_root}: embed into a new store")


DESCRIPTIVE_TOKEN_KEYS = ("centre_crop",)
"""Recorded with a token store's reading but not deciding its rows (how heatmaps lay the grid over
a picture); stores from before it was recorded lack it, and appending to them is the same reading."""


def _reading(tokens: dict | None) -> dict | None:
    """What decides a store's token rows, for comparing two readings."""
    if not tokens:
        return None
    return {k: v for k, v in tokens.items() if k not in DESCRIPTIVE_TOKEN_KEYS}


def _job_done(out: Path, key: str) -> int:
    if not (out / MANIFEST_NAME).exists():
        return 0
    return EmbeddingStore(out).manifest.jobs.get(key, 0)


def _merge(
    out: Path,
    staging: Path,
    world: int,
    key: str,
    total: int,
    backend: Backend,
    cfg: EmbedConfig,
    preprocessing: dict,
    local_pair_ids: bool,
) -> EmbedReport:
    with StoreWriter(
        out,
        dim=backend.dim,
        dtype=cfg.dtype,
        model_id=backend.model_id,
        preprocessing=preprocessing,
        shard_rows=cfg.shard_rows,
        job=key,
        local_pair_ids=local_pair_ids,
    ) as writer:
        if writer.rows_done >= total:  # the same job, run beside this one, merged while we waited for the lock
            return _read_report(out, key)
        parts = [EmbeddingStore(staging / f"rank-{r:05d}") for r in range(world)]
        consumed = sum(p.manifest.jobs.get("part", 0) for p in parts)
        if consumed != total:
            raise MmsaeError(f"the ranks' parts cover {consumed} of {total} items; re-run the same command to finish")
        written = _adopt_parts(writer, parts, preprocessing)
        writer.commit(consumed=total)
    skipped = []
    for r in range(world):
        path = staging / f"rank-{r:05d}" / "skipped.json"
        if path.exists():
            skipped += [v | {"item": int(k)} for k, v in json.loads(path.read_text()).items()]
    skipped.sort(key=lambda v: v["item"])
    store = EmbeddingStore(out)
    return EmbedReport(
        str(out),
        backend.model_id,
        "",
        0,
        0,
        written,
        len(skipped),
        0,
        0,
        world,
        0.0,
        counts=dict(store.manifest.counts),
        skipped=skipped,
    )


def _adopt_parts(writer: StoreWriter, parts: list[EmbeddingStore], preprocessing: dict) -> int:
    """The ranks' shards, images before captions; returns the rows adopted."""
    if IMAGE_ROOT_KEY in preprocessing:
        writer.manifest.preprocessing.setdefault(IMAGE_ROOT_KEY, preprocessing[IMAGE_ROOT_KEY])
    writer.manifest.preprocessing.setdefault(BACKEND_KEY, preprocessing[BACKEND_KEY])
    writer.manifest.preprocessing.setdefault("l2_normalized", preprocessing["l2_normalized"])
    if TOKENS_KEY in preprocessing:
        writer.manifest.preprocessing.setdefault(TOKENS_KEY, preprocessing[TOKENS_KEY])
    written = 0
    for modality in ("image", "text"):
        for p in parts:
            for s in range(len(p.shards)):
                mods = p.shard_metadata(s, ["modality"]).column("modality").unique().to_pylist()
                if mods == [modality]:
                    writer.adopt(p, s)
                    written += p.shards[s].n_rows
    return written


def _write_report(out: Path, key: str, report: EmbedReport) -> None:
    path = out / REPORT_NAME
    reports = json.loads(path.read_text()) if path.exists() else {}
    reports[key] = asdict(report)
    write_json_atomic(path, reports)


def _read_report(out: Path, key: str) -> EmbedReport:
    path = out / REPORT_NAME
    obj = json.loads(path.read_text()).get(key) if path.exists() else None
    if obj is None:
        store = EmbeddingStore(out)
        return EmbedReport(
            str(out), store.manifest.model_id, "", 0, 0, 0, 0, 0, 0, 1, 0.0, counts=dict(store.manifest.counts)
        )
    return EmbedReport(**obj)
