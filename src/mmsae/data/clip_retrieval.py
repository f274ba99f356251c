"""Import the output folder of clip-retrieval's inference (`clip-retrieval inference`).

Its writer (`clip_retrieval/clip_inference/writer.py`, `OutputSink`) leaves, for each output
partition N (zero-padded to the width of the partition count):

    DIR/img_emb/img_emb_N.npy          [n, D] image embeddings (absent with image embedding off)
    DIR/text_emb/text_emb_N.npy        [n, D] caption embeddings (absent with text embedding off)
    DIR/metadata/metadata_N.parquet    n rows: image_path (the file, or a webdataset's sample key),
                                       caption, and with --enable_metadata the fields of each
                                       sample's JSON (url, key, width, ...)

Row i of the three files of a partition is one sample: image row i and text row i are a pair and
metadata row i describes both. Partitions are read one at a time, in numeric order of N, through
memory maps; each one ends in a commit, so an interrupted import resumes after the last one
committed. Everything is checked (names, counts, dimensions, NaN rows, metadata columns) before
the store is opened: a bad folder writes nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsae.data.importers import (
    ImportReport,
    _check_range,
    _fingerprint,
    _Part,
    attach_metadata,
    import_target,
    invalid_rows,
    load_embeddings,
    write_import,
)
from mmsae.data.metadata import describe_rows
from mmsae.data.store import NO_PAIR
from mmsae.errors import MmsaeError

EMB_FOLDERS = {"image": ("img_emb", "img_emb_"), "text": ("text_emb", "text_emb_")}
"""Modality → (folder, file prefix), as clip-retrieval's writer names them."""
META_FOLDER, META_PREFIX = "metadata", "metadata_"


@dataclass
class _Shard:
    number: int
    files: dict[str, Path]
    """Modality → its embedding file."""
    metadata: Path
    n: int = 0
    bad: dict[str, np.ndarray] | None = None
    """Modality → rows holding NaN/inf (dropped with --drop-invalid)."""

    def kept(self) -> int:
        return sum(self.n - len(b) for b in (self.bad or {}).values())


def _numbered(folder: Path, prefix: str, suffix: str) -> dict[int, Path]:
    """N → file `PREFIX{N}SUFFIX` of a folder; other files are ignored."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    out: dict[int, Path] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise MmsaeError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for name in names:
        m = pattern.fullmatch(name)
        if not m:
            continue
        n = int(m.group(1))
        if n in out:
            raise MmsaeError(f"{folder}: {out[n].name} and {name} are both partition {n}")
        out[n] = folder / name
    return out


def scan_folder(folder: str | os.PathLike) -> list[_Shard]:
    """The partitions of a clip-retrieval output folder, in numeric order, each with all its files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MmsaeError(f"--clip-retrieval {folder}: no such folder")
    present = {m: folder / sub for m, (sub, _) in EMB_FOLDERS.items() if (folder / sub).is_dir()}
    if not present:
        raise MmsaeError(
            f"{folder} is not a clip-retrieval output folder: it has neither img_emb/ nor text_emb/ "
            "(give the folder clip-retrieval inference wrote into)"
        )
    if not (folder / META_FOLDER).is_dir():
        raise MmsaeError(f"{folder} is not a clip-retrieval output folder: it has no metadata/")
    found = {m: _numbered(sub, EMB_FOLDERS[m][1], ".npy") for m, sub in present.items()}
    meta = _numbered(folder / META_FOLDER, META_PREFIX, ".parquet")
    numbers = sorted(set(meta).union(*found.values()))
    if not numbers:
        raise MmsaeError(f"{folder}: no img_emb_N.npy, text_emb_N.npy or metadata_N.parquet files")
    shards = []
    for n in range(numbers[-1] + 1):
        if n not in numbers:
            raise MmsaeError(
                f"{folder}: partition {n} is missing (no img_emb_{n}, text_emb_{n} or metadata_{n}, "
                f"but there are partitions up to {numbers[-1]}); is the export complete?"
            )
        for m, files in found.items():
            if n not in files:
                sub, prefix = EMB_FOLDERS[m]
                raise MmsaeError(f"{folder}: partition {n} has no {sub}/{prefix}{n}.npy; is the export complete?")
        if n not in meta:
            raise MmsaeError(
                f"{folder}: partition {n} has no {META_FOLDER}/{META_PREFIX}{n}.parquet; is the export complete?"
            )
        shards.append(_Shard(n, {m: files[n] for m, files in found.items()}, meta[n]))
    return shards


def _metadata_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as f:
            return f.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise MmsaeError(f"{path}: cannot read as parquet ({msg})") from None


def _read_metadata(shard: _Shard):
    from mmsae.data.metadata import read_metadata_table

    return describe_rows(read_metadata_table(shard.metadata), shard.metadata, shard.n, keyed=False)


def _check_shard(shard: _Shard, dim: int | None, dtype: str, drop_invalid: bool) -> int:
    """Check one partition's files against each other (reading the embeddings block by block);
    returns the embedding dimension."""
    shard.bad = {}
    counts = {}
    for m, path in shard.files.items():
        arr = load_embeddings(path)
        if dim is not None and arr.shape[1] != dim:
            raise MmsaeError(f"{path}: {arr.shape[1]}-d embeddings, earlier files are {dim}-d")
        dim = arr.shape[1]
        counts[m] = len(arr)
        bad = invalid_rows(arr)
        if len(bad) and not drop_invalid:
            raise MmsaeError(
                f"{path}: {len(bad)} of {len(arr)} rows contain NaN or inf; fix them or pass --drop-invalid "
                "to skip them"
            )
        keep = np.setdiff1d(np.arange(len(arr)), bad)
        _check_range(arr, keep, path, dtype)
        shard.bad[m] = bad
        del arr
    n_meta = _metadata_rows(shard.metadata)
    if len(set(counts.values()) | {n_meta}) != 1:
        sizes = ", ".join(f"{shard.files[m].name} {c}" for m, c in counts.items())
        raise MmsaeError(
            f"partition {shard.number} disagrees on its row count ({sizes}, {shard.metadata.name} {n_meta}); "
            "row i of each must be one sample"
        )
    shard.n = n_meta
    _read_metadata(shard)  # checks its columns; the rows are read again when written
    return dim


def _parts(shard: _Shard, pair_offset: int, paired: bool) -> list[_Part]:
    md = _read_metadata(shard)
    parts = []
    for m, path in shard.files.items():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        keep = np.setdiff1d(np.arange(shard.n), shard.bad[m])
        if paired:
            pids = np.arange(pair_offset, pair_offset + shard.n, dtype=np.int64)
        else:
            pids = np.full(shard.n, NO_PAIR, np.int64)
        parts.append(_Part(arr, keep, m, pids, path, None))
    attach_metadata(parts, md, shard.metadata)
    return parts


def import_clip_retrieval(
    out: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    model_id: str = "unknown",
    dtype: str | None = None,
    drop_invalid: bool = False,
    shard_rows: int = 65536,
    progress: bool = False,
) -> ImportReport:
    """Import a clip-retrieval output folder (module docstring): the image rows, then the text rows,
    of partition 0, then of partition 1, ...; image row i and text row i of a partition share a
    pair id (numbered by this import, shifted past the store's own). Metadata: `image_path` (else
    `url`) is the image rows' source, `caption` the text of both rows of a pair, the other columns
    their extra metadata. Resumable like every import: re-running it continues after the last
    committed partition."""
    out = Path(out)
    existing, target_dtype, root = import_target(out, dtype, shard_rows, image_root)
    shards = scan_folder(folder)
    from tqdm.auto import tqdm

    dim = None
    # a bar on a terminal only, wiped when done: a problem found must stay the one line printed
    bar = tqdm(shards, desc="check", unit="partition", leave=False, disable=None if progress else True)
    try:
        for shard in bar:
            dim = _check_shard(shard, dim, target_dtype, drop_invalid)
    finally:
        bar.close()
    if existing is not None and existing.dim != dim:
        raise MmsaeError(
            f"dimension mismatch: store {out} holds {existing.dim}-d embeddings, {folder} holds {dim}-d ones"
        )
    total = sum(s.kept() for s in shards)
    dropped = sum(s.n * len(s.files) for s in shards) - total
    if total == 0:
        raise MmsaeError(f"{folder}: every row is NaN/inf or the partitions are empty; nothing to import")
    modalities = sorted(shards[0].files)
    files = [p for s in shards for p in (*[s.files[m] for m in modalities], s.metadata)]
    job = _fingerprint("clip-retrieval", modalities, drop_invalid, *files)
    paired = len(modalities) == 2
    offsets = np.cumsum([0] + [s.n for s in shards])
    groups = [(s.kept(), lambda s=s, off=int(off): _parts(s, off, paired)) for s, off in zip(shards, offsets[:-1])]
    return write_import(
        out,
        groups,
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
