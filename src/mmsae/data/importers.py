"""Bring the user's own embedding files into a store.

Formats: `.npy`, `.npz`, `.safetensors`, `.pt`/`.pth` (tensors only, never arbitrary pickle) and
parquet with an embedding column. Every problem with an input is an `MmsaeError` naming the file.
Per-row metadata (image paths or URLs, captions, pair ids, other columns) comes from a CSV, JSONL or
parquet file (`data/metadata.py`); clip-retrieval's output folders are read by
`data/clip_retrieval.py`, through the same writer loop (`write_import`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsae.data.images import IMAGE_ROOT_KEY
from mmsae.data.manifest import MANIFEST_NAME, Manifest, read_manifest
from mmsae.data.metadata import RowMetadata, read_row_metadata
from mmsae.data.store import NO_PAIR, EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError

FORMATS = (".npy", ".npz", ".safetensors", ".pt", ".pth", ".parquet")


def _pick(arrays: dict[str, np.ndarray], key: str | None, path: Path) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise MmsaeError(f"{path}: no array named {key!r} (has {sorted(arrays)})")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for name in ("embeddings", "embedding", "emb", "x"):
        if name in arrays:
            return arrays[name]
    raise MmsaeError(f"{path}: holds several arrays {sorted(arrays)}; say which with --key")


def load_embeddings(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read an [N, D] float array from a user file (memory-mapped for `.npy`)."""
    path = Path(path)
    if not path.exists():
        raise MmsaeError(f"{path}: no such file")
    if path.is_dir():
        raise MmsaeError(f"{path}: is a directory, expected an embedding file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise MmsaeError(f"{path}: unsupported format {suffix!r}; use one of {', '.join(FORMATS)}")
    if path.stat().st_size == 0:
        raise MmsaeError(f"{path}: file is empty")
    try:
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = _pick({k: z[k] for k in z.files}, key, path)
        elif suffix == ".safetensors":
            from safetensors.torch import load_file  # the torch loader reads bfloat16, which numpy has not

            arr = _tensor_to_numpy(_pick(load_file(str(path)), key, path), path)
        elif suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, torch.Tensor):
                arr = _tensor_to_numpy(obj, path)
            elif isinstance(obj, dict):
                tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
                if not tensors:
                    raise MmsaeError(f"{path}: holds no tensor")
                arr = _tensor_to_numpy(_pick(tensors, key, path), path)
            else:
                raise MmsaeError(f"{path}: expected a tensor or a dict of tensors, got {type(obj).__name__}")
        else:
            arr = _load_parquet(path, key)
    except MmsaeError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, KeyError, TypeError, MemoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MmsaeError(f"{path}: cannot read ({msg}); is the file truncated or of another format?") from None
    except Exception as exc:  # e.g. pickle.UnpicklingError from a .pt holding non-tensor objects
        if type(exc).__name__ in ("UnpicklingError", "SafetensorError", "ArrowInvalid"):
            raise MmsaeError(
                f"{path}: cannot read safely ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        raise
    if (
        not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer)
    ) or arr.dtype == np.bool_:
        raise MmsaeError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise MmsaeError(f"{path}: expected a 2-D [N, D] array, got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MmsaeError(f"{path}: empty input (shape {tuple(arr.shape)})")
    return arr


def _tensor_to_numpy(t, path: Path) -> np.ndarray:
    import torch

    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        raise MmsaeError(f"{path}: expected real numbers, got {t.dtype}")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise MmsaeError(f"{path}: expected a numeric tensor, got {t.dtype}")
    return t.numpy()


def _load_parquet(path: Path, column: str | None) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    list_cols = [
        f.name
        for f in table.schema
        if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type) or pa.types.is_large_list(f.type)
    ]
    if column is None:
        column = "embedding" if "embedding" in list_cols else (list_cols[0] if len(list_cols) == 1 else None)
        if column is None:
            raise MmsaeError(
                f"{path}: cannot tell the embedding column among {list_cols or table.column_names}; say which with --key"
            )
    if column not in table.column_names:
        raise MmsaeError(f"{path}: no column {column!r} (has {table.column_names})")
    col = table.column(column).combine_chunks()
    typ = col.type
    if not (pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ) or pa.types.is_large_list(typ)) or not (
        pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)
    ):
        raise MmsaeError(
            f"{path}: column {column!r} holds {typ}; the embedding column must hold a list of numbers a row"
        )
    if col.null_count:
        raise MmsaeError(f"{path}: column {column!r} has {col.null_count} null rows")
    lengths = np.asarray(col.value_lengths()) if hasattr(col, "value_lengths") else None
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        raise MmsaeError(f"{path}: rows of {column!r} have different lengths")
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
    if len(col) == 0:
        return np.empty((0, 0), dtype=np.float32)
    return flat.reshape(len(col), -1)


def invalid_rows(arr_ND: np.ndarray, block: int = 65536) -> np.ndarray:
    """Indices of rows holding NaN or inf, found block by block so memmaps stay cheap."""
    bad = [np.nonzero(~np.isfinite(arr_ND[i : i + block]).all(axis=1))[0] + i for i in range(0, len(arr_ND), block)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def _check_finite(arr: np.ndarray, path: Path, drop_invalid: bool) -> np.ndarray:
    """Row indices to keep."""
    bad = invalid_rows(arr)
    if len(bad) and not drop_invalid:
        raise MmsaeError(
            f"{path}: {len(bad)} of {len(arr)} rows contain NaN or inf; fix them or pass --drop-invalid to skip them"
        )
    keep = np.ones(len(arr), dtype=bool)
    keep[bad] = False
    if keep.sum() == 0:
        raise MmsaeError(f"{path}: every row is NaN/inf; nothing to import")
    return np.nonzero(keep)[0]


def _read_text_file(path: Path, what: str) -> str:
    if not path.exists():
        raise MmsaeError(f"{path}: no such file")
    if path.is_dir():
        raise MmsaeError(f"{path}: is a directory, expected a {what} file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MmsaeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_captions(path: Path, n: int) -> list[str]:
    """One caption a line. Lines end at \n (or \r\n) only: a caption may hold a form feed or a
    Unicode line separator, which `str.splitlines` would take for line ends."""
    lines = _read_text_file(path, "captions").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if len(lines) != n:
        raise MmsaeError(f"{path}: {len(lines)} captions for {n} text rows; need one caption a line")
    return lines


def _read_pairs(path: Path, n_img: int, n_txt: int) -> np.ndarray:
    """pair id (its image row) of each text row; NO_PAIR where a text row is not listed."""
    out = np.full(n_txt, NO_PAIR, dtype=np.int64)
    for lineno, rec in enumerate(csv.reader(_read_text_file(path, "pairs CSV").splitlines()), start=1):
        if not rec or (lineno == 1 and not rec[0].strip().lstrip("-").isdigit()):
            continue  # blank line or header
        try:
            img, txt = int(rec[0]), int(rec[1])
        except (ValueError, IndexError):
            raise MmsaeError(f"{path}:{lineno}: expected 'image_row,text_row', got {','.join(rec)[:80]!r}") from None
        if not (0 <= img < n_img and 0 <= txt < n_txt):
            raise MmsaeError(f"{path}:{lineno}: row ({img}, {txt}) out of range ({n_img} images, {n_txt} texts)")
        if out[txt] != NO_PAIR and out[txt] != img:
            raise MmsaeError(f"{path}:{lineno}: text row {txt} is paired with two images")
        out[txt] = img
    return out


MODALITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
"""What a modality may be called: a short identifier (it is shown in the explorer and in file names)."""


def check_modality(name: str) -> str:
    if not MODALITY_NAME.fullmatch(name):
        raise MmsaeError(
            f"modality {name[:40]!r} is not a short name (a letter, then up to 31 letters, digits, "
            "'_' or '-'), e.g. image or text"
        )
    return name


def _digest(path: Path) -> str:
    """Content hash of a file: a re-run of the same import is recognised by what it reads, not by
    the file's name or modification time (a `touch` must not duplicate every row, and a file
    rewritten in place under the same name must not be skipped)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


def _fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(_digest(p) if isinstance(p, Path) else p, default=str).encode())
    return "import:" + h.hexdigest()[:16]


def _legacy_fingerprint(*parts: object) -> str:
    """The job key of mmsae versions that keyed on path, size and mtime: an import begun by one of
    them resumes under it instead of starting over."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.exists():
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        else:
            h.update(json.dumps(p, default=str).encode())
    return "import:" + h.hexdigest()[:16]


def _check_range(arr: np.ndarray, keep: np.ndarray, path: Path, dtype: str) -> None:
    """Finite values too large for the store's dtype would be stored as inf."""
    if not np.issubdtype(arr.dtype, np.floating) or np.finfo(arr.dtype).max <= np.finfo(dtype).max:
        return
    limit = np.finfo(dtype).max
    for i in range(0, len(keep), 65536):
        sel = keep[i : i + 65536]
        big = np.abs(np.asarray(arr[sel])).max(axis=1) > limit
        if big.any():
            raise MmsaeError(
                f"{path}: row {int(sel[np.argmax(big)])} holds values out of {dtype} range "
                f"(|x| > {limit:.3g}); rescale the embeddings"
                + (" or use a float32 store" if dtype == "float16" else "")
            )


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    store: str
    rows_written: int
    rows_skipped_resume: int
    rows_dropped_invalid: int
    counts: dict


@dataclass
class _Part:
    arr: np.ndarray
    keep: np.ndarray
    modality: str
    pair_ids: np.ndarray
    path: Path
    texts: list[str | None] | None
    sources: list[str | None] | None = None
    """Per row of `arr`; None (or a None entry): `PATH#ROW`."""
    extra: list[str | None] | None = None

    def source(self, j: int) -> str:
        s = self.sources[j] if self.sources is not None else None
        return s if s else f"{self.path}#{j}"


def attach_metadata(
    parts: list[_Part], md: RowMetadata, path: Path, *, captions_given: bool = False, pairs_given: bool = False
) -> None:
    """Give `parts` what the metadata says. A metadata row describes row i of every part (a paired
    import: pair i), or with `pairs_given` (many captions per image, `--pairs`) image row i only.
    Its `image_path`/`url` becomes the source of the image rows (of the only part when there are
    none), its `caption` the text of every row it describes (an image row shows its pair's
    caption), its `pair_id` their pair ids, its other columns their extra metadata."""
    targets = [p for p in parts if p.modality == "image"] if pairs_given else parts
    if md.caption is not None and captions_given and any(p.texts is not None for p in targets):
        raise MmsaeError(f"{path} has a caption column and --captions gives captions too; give them once")
    if md.pair_id is not None and pairs_given:
        raise MmsaeError(f"{path}: a pair_id column and --pairs both say which rows pair; give one")
    images = [p for p in targets if p.modality == "image"]
    for p in images or targets[:1]:
        if md.source is not None:
            p.sources = md.source
    for p in targets:
        if md.caption is not None:
            p.texts = md.caption
        if md.pair_id is not None:
            p.pair_ids = md.pair_id
        if md.extra is not None:
            p.extra = md.extra


def image_root_setting(out: Path, existing: Manifest | None, image_root: str | os.PathLike | None) -> str | None:
    """`--image-root` resolved, after checking it is a folder and the store has no other image root."""
    if image_root is None:
        return None
    root = Path(image_root)
    if not root.is_dir():
        raise MmsaeError(f"--image-root {image_root}: no such folder")
    root = root.resolve()
    _same_root(out, existing, str(root))
    return str(root)


def _same_root(out: Path, manifest: Manifest | None, root: str) -> None:
    held = manifest.preprocessing.get(IMAGE_ROOT_KEY) if manifest is not None else None
    if held:
        held_path = Path(held) if Path(held).is_absolute() else out / held
        if held_path.resolve() != Path(root).resolve():
            raise MmsaeError(
                f"store {out} holds images under {held}; these are under {root}: give the same --image-root "
                "or import into a new store"
            )


def import_target(
    out: Path, dtype: str | None, shard_rows: int, image_root: str | os.PathLike | None
) -> tuple[Manifest | None, str, str | None]:
    """(the store's manifest or None, the dtype rows will be stored as, the image root to record),
    or a one-line error, before any input is read: what every importer checks of its target."""
    if shard_rows <= 0:
        raise MmsaeError(f"rows per shard must be positive, got {shard_rows}")
    if out.exists() and not out.is_dir():
        raise MmsaeError(f"--out {out} is a file, not a store folder")
    existing = read_manifest(out) if (out / MANIFEST_NAME).exists() else None
    if existing is not None and dtype is not None and existing.n_rows and existing.dtype != dtype:
        raise MmsaeError(
            f"store {out} holds {existing.dtype} embeddings; leave out --dtype (rows are stored as "
            f"{existing.dtype}) or import into a new store"
        )
    target_dtype = existing.dtype if existing is not None and existing.n_rows else (dtype or "float32")
    return existing, target_dtype, image_root_setting(out, existing, image_root)


def write_import(
    out: Path,
    groups: Iterable[tuple[int, Callable[[], list[_Part]]]],
    *,
    total: int,
    dim: int,
    dtype: str | None,
    model_id: str,
    shard_rows: int,
    job: str,
    dropped: int = 0,
    image_root: str | None = None,
    progress: bool = False,
) -> ImportReport:
    """Write the kept rows of each group's parts, after the `rows_done` an earlier run of the same
        job committed; each group ends in a commit. A group is (kept rows, a function making its parts),
        so the groups already committed are never opened. `dropped`: invalid rows the caller left out,
    for the report."""
    from tqdm.auto import tqdm

    preprocessing = {IMAGE_ROOT_KEY: image_root} if image_root else None
    with StoreWriter(
        out,
        dim=dim,
        dtype=dtype,
        model_id=model_id,
        preprocessing=preprocessing,
        shard_rows=shard_rows,
        job=job,
        local_pair_ids=True,
    ) as writer:
        new_root = False
        if image_root:
            _same_root(out, writer.manifest, image_root)  # again, under the lock
            new_root = IMAGE_ROOT_KEY not in writer.manifest.preprocessing
            writer.manifest.preprocessing.setdefault(IMAGE_ROOT_KEY, image_root)
        done = writer.rows_done  # read under the lock: a concurrent run of the same import is seen
        skip = done
        written = 0
        bar = tqdm(total=total, initial=min(done, total), desc="import", unit="row", disable=not progress)
        step = max(1, min(shard_rows, 65536))
        for kept, make_parts in groups:
            if skip >= kept:
                skip -= kept
                continue
            for part in make_parts():
                rows = part.keep
                if skip >= len(rows):
                    skip -= len(rows)
                    continue
                rows = rows[skip:]
                skip = 0
                for i in range(0, len(rows), step):
                    sel = rows[i : i + step]
                    writer.append(
                        np.asarray(part.arr[sel], dtype=np.float32),
                        part.modality,
                        pair_id=part.pair_ids[sel],
                        source=[part.source(j) for j in sel],
                        text=[part.texts[j] for j in sel] if part.texts is not None else None,
                        extra=[part.extra[j] for j in sel] if part.extra is not None else None,
                    )
                    written += len(sel)
                    bar.update(len(sel))
            writer.flush()
        if new_root:  # recorded even when every row was already there
            writer.commit()
        bar.close()
    return ImportReport(str(out), written, min(done, total), dropped, dict(EmbeddingStore(out).manifest.counts))


def import_embeddings(
    out: str | os.PathLike,
    *,
    embeddings: str | os.PathLike | None = None,
    modality: str | None = None,
    images: str | os.PathLike | None = None,
    texts: str | os.PathLike | None = None,
    pairs: str | os.PathLike | None = None,
    captions: str | os.PathLike | None = None,
    key: str | None = None,
    model_id: str = "unknown",
    dtype: str | None = None,
    drop_invalid: bool = False,
    shard_rows: int = 65536,
    progress: bool = False,
    metadata: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
) -> ImportReport:
    """Import one file of a single modality, or an image file and a text file that pair up.

    Resumable: re-running the same import (same file contents and options) continues after the
    last committed shard and never writes a row twice. Pair ids are the rows' positions in the
    files, shifted past every pair id already in the store, so a second paired import never
    pairs with the first. `dtype` None keeps the store's own (float32 for a new store).

    `metadata`: a CSV, JSONL or parquet file with a row per embedding row (per pair in a paired
    import; per image row with `pairs`), in order or keyed by a `row` column (`attach_metadata`,
    `data/metadata.py`). `image_root`: the folder the `image_path`s are relative to, recorded in
    the store so that the explorer shows the pictures. Everything is checked before the store is
    opened: a bad input writes nothing.
    """
    out = Path(out)
    existing, target_dtype, root = import_target(out, dtype, shard_rows, image_root)
    if root is not None and metadata is None:
        raise MmsaeError("--image-root says where the --metadata file's image_path files are; it needs --metadata")
    parts = _read_parts(embeddings, modality, images, texts, pairs, captions, key, drop_invalid)
    if metadata is not None:
        pairs_given = pairs is not None and len(parts) == 2
        md = read_row_metadata(Path(metadata), len(parts[0].arr))
        attach_metadata(parts, md, Path(metadata), captions_given=captions is not None, pairs_given=pairs_given)
    for part in parts:
        _check_range(part.arr, part.keep, part.path, target_dtype)
    dim = parts[0].arr.shape[1]
    inputs = [p.path for p in parts]
    extras = [Path(x) for x in (pairs, captions) if x]
    with_meta = [Path(metadata)] if metadata is not None else []  # absent: the key of imports before --metadata
    job = _fingerprint(
        *inputs, modality, key, drop_invalid, pairs is not None, captions is not None, *extras, *with_meta
    )
    if existing is not None and job not in existing.jobs and metadata is None:
        legacy = _legacy_fingerprint(*inputs, modality, key, drop_invalid, str(pairs), str(captions), *extras)
        job = legacy if legacy in existing.jobs else job
    total = sum(len(p.keep) for p in parts)
    dropped = sum(len(p.arr) - len(p.keep) for p in parts)
    return write_import(
        out,
        [(total, lambda: parts)],
        total=total,
        dim=dim,
        dtype=dtype,
        model_id=model_id,
        shard_rows=shard_rows,
        job=job,
        dropped=dropped,
        image_root=root,
        progress=progress,
    )


def _read_parts(embeddings, modality, images, texts, pairs, captions, key, drop_invalid) -> list[_Part]:
    """The arrays to import with their kept rows, modality, in-file pair ids and captions."""
    parts: list[_Part] = []
    if embeddings is not None:
        if images is not None or texts is not None:
            raise MmsaeError("give either one embedding file with --modality, or --images/--texts, not both")
        if not modality:
            raise MmsaeError("say which modality the embeddings are with --modality (e.g. image or text)")
        check_modality(modality)
        if pairs is not None:
            raise MmsaeError("--pairs pairs an --images file with a --texts file; it does not apply to one file")
        p = Path(embeddings)
        arr = load_embeddings(p, key)
        parts.append(
            _Part(
                arr,
                _check_finite(arr, p, drop_invalid),
                modality,
                np.full(len(arr), NO_PAIR, np.int64),
                p,
                _read_captions(Path(captions), len(arr)) if captions else None,
            )
        )
        return parts
    if images is None and texts is None:
        raise MmsaeError("nothing to import: give an embedding file, or --images and/or --texts")
    if modality is not None:
        raise MmsaeError("--modality names the modality of one embedding file; --images and --texts say theirs")
    img = load_embeddings(Path(images), key) if images is not None else None
    txt = load_embeddings(Path(texts), key) if texts is not None else None
    if img is not None and txt is not None and img.shape[1] != txt.shape[1]:
        raise MmsaeError(f"dimension mismatch: images are {img.shape[1]}-d, texts are {txt.shape[1]}-d")
    if captions is not None and txt is None:
        raise MmsaeError("--captions gives the text of the --texts rows; it needs --texts")
    if img is not None:
        parts.append(
            _Part(
                img,
                _check_finite(img, Path(images), drop_invalid),
                "image",
                np.arange(len(img), dtype=np.int64),
                Path(images),
                None,
            )
        )
    if txt is not None:
        if pairs is not None:
            if img is None:
                raise MmsaeError("--pairs needs --images too")
            tp = _read_pairs(Path(pairs), len(img), len(txt))
        elif img is not None:
            if len(img) != len(txt):
                raise MmsaeError(
                    f"{len(img)} image rows but {len(txt)} text rows: row i of each must be a pair, or give --pairs"
                )
            tp = np.arange(len(txt), dtype=np.int64)
        else:
            tp = np.full(len(txt), NO_PAIR, np.int64)
        caps = _read_captions(Path(captions), len(txt)) if captions else None
        parts.append(_Part(txt, _check_finite(txt, Path(texts), drop_invalid), "text", tp, Path(texts), caps))
    return parts


def store_summary(store: EmbeddingStore) -> dict:
    m = store.manifest
    return {
        "store": str(store.root),
        "rows": m.n_rows,
        "dim": m.dim,
        "dtype": m.dtype,
        "model_id": m.model_id,
        "counts": m.counts,
        "shards": len(m.shards),
        "preprocessing": m.preprocessing,
    }
