"""The embedding store: sharded, memory-mapped embeddings plus a parquet metadata table.

Layout of a store folder:

    manifest.json            dim, dtype, counts, shards (see `manifest.py`)
    shards/shard-000000.npy      [n, D] float32 or float16, memory-mappable
    shards/shard-000000.parquet  row_id, modality, pair_id, source, text, model_id [, extra]

Readers trust only shards listed in the manifest.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsae.data.manifest import MANIFEST_NAME, SUPPORTED_DTYPES, Manifest, ShardInfo, read_manifest, write_manifest
from mmsae.errors import MmsaeError

SHARD_DIR = "shards"
LOCK_NAME = ".writer.lock"
"""Held (flock) by the one process that may write the store; holds that process's pid."""
NO_PAIR = -1
"""pair_id of a row that belongs to no pair."""
METADATA_SCHEMA = pa.schema(
    [
        ("row_id", pa.int64()),
        ("modality", pa.string()),
        ("pair_id", pa.int64()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("model_id", pa.string()),
    ]
)
OPTIONAL_SCHEMA = pa.schema([("extra", pa.string())])
"""Columns a shard may lack (shards written before them, or without such values): read as nulls.
`extra` holds a JSON object a row of the import's other metadata columns (`data/metadata.py`)."""
_FULL_SCHEMA = pa.schema([*METADATA_SCHEMA, *OPTIONAL_SCHEMA])
_NUMPY_TYPES = {
    pa.int64(): np.int64,
    pa.int32(): np.int32,
    pa.int16(): np.int16,
    pa.int8(): np.int8,
    pa.uint32(): np.uint32,
    pa.float64(): np.float64,
    pa.float32(): np.float32,
}


@functools.cache
def _row_reader():
    """The compiled gather (`_pread_kernel.read_rows`), compiled on first use; None where it cannot
    run (no numba, no pread, a 32-bit platform, a failed compile): `get` then reads in Python."""
    if not hasattr(os, "pread") or sys.maxsize < 2**63 - 1 or os.environ.get("MMSAE_PYTHON_READS"):
        return None
    try:
        from mmsae.data._pread_kernel import read_rows

        empty = np.empty(0, np.int64)
        read_rows(-1, 0, empty, empty, 1, np.empty(0, np.uint8))  # compiles (or loads) for these types
    except Exception:  # noqa: BLE001 - any failure means the Python reads, never a failed read
        return None
    return read_rows


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """One metadata column as a numpy array (strings as an object array).

    Not `to_numpy`: pyarrow imports pandas on its first conversion wherever pandas is installed,
    ~40 MB of resident memory for a training process that never uses it. Fixed-width columns are
    read from their Arrow data buffer; string columns are dictionary-encoded (a store's modality
    column has a handful of distinct values)."""
    col = table.column(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        parts = [
            np.array(c.dictionary.to_pylist(), dtype=object)[_fixed_width(c.indices)]
            for c in col.dictionary_encode().chunks
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=object)
    if col.type not in _NUMPY_TYPES:
        return col.to_numpy(zero_copy_only=False)
    parts = [_fixed_width(c) for c in col.chunks]
    return np.concatenate(parts) if parts else np.empty(0, dtype=_NUMPY_TYPES[col.type])


def _conform(table: pa.Table, path: Path) -> pa.Table:
    """`table` with each column in its schema type (safe casts only), or a one-line error."""
    for j, name in enumerate(table.column_names):
        if name not in _FULL_SCHEMA.names:
            continue
        want = _FULL_SCHEMA.field(name).type
        col = table.column(j)
        if col.type != want:
            try:
                col = col.cast(want, safe=True)
            except (pa.ArrowException, NotImplementedError):
                raise MmsaeError(f"metadata {path}: column {name!r} is {col.type}, expected {want}") from None
            table = table.set_column(j, name, col)
        if name in ("row_id", "modality", "pair_id") and col.null_count:
            raise MmsaeError(f"metadata {path}: column {name!r} has {col.null_count} empty value(s)")
    return table


def _fixed_width(arr: pa.Array) -> np.ndarray:
    if arr.null_count or arr.type not in _NUMPY_TYPES:
        return arr.to_numpy(zero_copy_only=False)
    return np.frombuffer(arr.buffers()[1], dtype=_NUMPY_TYPES[arr.type])[arr.offset : arr.offset + len(arr)]


class EmbeddingStore:
    """Read access to a store: memmapped shards, metadata, filters."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MmsaeError(f"store {self.root} does not exist")
        self.manifest: Manifest = read_manifest(self.root)
        self._starts_S = np.array([s.row_start for s in self.manifest.shards], dtype=np.int64)
        self._mmaps: dict[int, np.ndarray] = {}
        self._fds: dict[int, tuple[int, int, np.dtype]] = {}
        self._fds_lock = threading.Lock()
        self._meta: pa.Table | None = None

    # --- shape -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def shards(self) -> list[ShardInfo]:
        return self.manifest.shards

    def __len__(self) -> int:
        return self.manifest.n_rows

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.root)!r}, rows={len(self)}, dim={self.dim}, counts={self.manifest.counts})"

    # --- embeddings ----------------------------------------------------------------------------
    def shard_embeddings(self, i: int) -> np.ndarray:
        """The memmapped [n, D] array of shard i (no copy)."""
        if i not in self._mmaps:
            info = self.shards[i]
            path = self.root / SHARD_DIR / f"{info.name}.npy"
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise MmsaeError(f"shard {path} is missing or damaged: {exc}") from None
            if arr.shape != (info.n_rows, self.dim):
                raise MmsaeError(f"shard {path} has shape {arr.shape}, manifest says {(info.n_rows, self.dim)}")
            self._mmaps[i] = arr
        return self._mmaps[i]

    def get(self, rows: Sequence[int] | np.ndarray, dtype=np.float32) -> np.ndarray:
        """Embeddings of the given global row ids, in the order given.

        Read with positioned reads (one per run of consecutive rows, in a compiled loop that releases
        the GIL where numba is there, else `os.preadv` from Python), not through the memory map: a scattered gather from a mapping maps the pages around each row into this
        process (Linux fault-around, 64 KB or more per row), so a batch of 4096 rows would add
        hundreds of MB of file pages to its resident memory; reads hold only the batch, and are
        as fast (4 ms against 6-8 ms for 4096 rows of 2 KB from the page cache, measured)."""
        rows_N = np.asarray(rows, dtype=np.int64)
        out_ND = np.empty((len(rows_N), self.dim), dtype=dtype)
        if len(rows_N) == 0:
            return out_ND
        if rows_N.min() < 0 or rows_N.max() >= len(self):
            raise MmsaeError(f"row ids out of range [0, {len(self)})")
        shard_N = np.searchsorted(self._starts_S, rows_N, side="right") - 1
        shards = np.unique(shard_N).tolist()
        read = _row_reader()
        files = [self._file(s) for s in shards] if read is not None and hasattr(os, "preadv") else []
        raw_ND = None
        if files and len({dt for _, _, dt in files}) == 1:  # one dtype: every shard reads into one batch
            raw_ND = out_ND if files[0][2] == out_ND.dtype else np.empty((len(rows_N), self.dim), files[0][2])
        for i, s in enumerate(shards):
            sel = np.nonzero(shard_N == s)[0]
            local = rows_N[sel] - self._starts_S[s]
            order = np.argsort(local, kind="stable")  # sorted reads are kinder to the disk
            if raw_ND is None:
                out_ND[sel[order]] = self.shard_rows(s, local[order])
                continue
            fd, offset, dt = files[i]
            flat = raw_ND.reshape(-1).view(np.uint8)
            status = read(fd, offset, local[order], sel[order], self.dim * dt.itemsize, flat)
            if status >= 0:
                raise MmsaeError(f"shard {self.shards[s].name} is shorter than its manifest says")
            if status < -1:
                raise MmsaeError(f"shard {self.shards[s].name}: reading its rows failed (an I/O error on the disk)")
        if raw_ND is not None and raw_ND is not out_ND:
            out_ND[:] = raw_ND
        return out_ND

    def shard_rows(self, shard: int, local_N: np.ndarray) -> np.ndarray:
        """Rows `local_N` (ascending, local to the shard) of one shard, in the shard's dtype; read,
        not mapped (see `get`)."""
        if not hasattr(os, "preadv"):  # not on every platform: read through the mapping
            return np.asarray(self.shard_embeddings(shard)[local_N])
        fd, offset, dtype = self._file(shard)
        out_ND = np.empty((len(local_N), self.dim), dtype=dtype)
        row_bytes = self.dim * dtype.itemsize
        buf = memoryview(out_ND).cast("B")
        starts = np.flatnonzero(np.diff(local_N, prepend=-2) != 1)  # runs of consecutive rows: one read each
        ends = np.append(starts[1:], len(local_N))
        for a, b, row in zip(starts.tolist(), ends.tolist(), local_N[starts].tolist()):
            n = os.preadv(fd, [buf[a * row_bytes : b * row_bytes]], offset + row * row_bytes)
            if n != (b - a) * row_bytes:
                raise MmsaeError(f"shard {self.shards[shard].name} is shorter than its manifest says")
        return out_ND

    def will_need(self, shard: int, lo: int, hi: int) -> None:
        """Ask the kernel to read rows [lo, hi) of a shard into the page cache in the background:
        one sequential read ahead of the step instead of a random read per row when the rows are
        gathered (a store larger than RAM comes off disk). A hint; a no-op where unsupported."""
        if hi <= lo or not hasattr(os, "posix_fadvise"):
            return
        fd, offset, dtype = self._file(shard)
        row_bytes = self.dim * dtype.itemsize
        try:
            os.posix_fadvise(fd, offset + lo * row_bytes, (hi - lo) * row_bytes, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    def _file(self, shard: int) -> tuple[int, int, np.dtype]:
        """(file descriptor, byte offset of row 0, dtype) of a shard's .npy, opened once (under a
        lock: the explorer's threads and the prefetch thread read the same store)."""
        if shard in self._fds:
            return self._fds[shard]
        with self._fds_lock:
            return self._open_file(shard)

    def _open_file(self, shard: int) -> tuple[int, int, np.dtype]:
        if shard not in self._fds:
            self.shard_embeddings(shard)  # validates the file and its shape
            path = self.root / SHARD_DIR / f"{self.shards[shard].name}.npy"
            fmt = np.lib.format
            with open(path, "rb") as f:
                major, _ = fmt.read_magic(f)
                _, fortran, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
                offset = f.tell()
            if fortran:
                raise MmsaeError(f"shard {path} is stored column-major; rows cannot be read one by one")
            self._fds[shard] = (os.open(path, os.O_RDONLY), offset, np.dtype(dtype))
        return self._fds[shard]

    def __del__(self):
        for fd, _, _ in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def all_embeddings(self, dtype=np.float32) -> np.ndarray:
        """Every row in one array; for small stores and tests only."""
        parts = [np.asarray(self.shard_embeddings(i), dtype=dtype) for i in range(len(self.shards))]
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=dtype)

    # --- metadata ------------------------------------------------------------------------------
    def shard_metadata(self, i: int, columns: Iterable[str] | None = None) -> pa.Table:
        """Metadata of shard i, checked against the manifest and the schema: a parquet that does not
        match its shard (other row count, missing or mistyped columns, nulls where a row needs a
        value) is refused rather than silently read short or wrong. Every column by default,
        optional ones (`OPTIONAL_SCHEMA`) included; an optional column the shard lacks reads as
        nulls."""
        info = self.shards[i]
        path = self.root / SHARD_DIR / f"{info.name}.parquet"
        try:  # ParquetFile, not read_table: its dataset layer costs ~45 MB of resident memory on first use
            with pq.ParquetFile(path) as f:
                names = f.schema_arrow.names
                wanted = list(columns) if columns is not None else _FULL_SCHEMA.names
                absent = [c for c in wanted if c not in names]
                missing = [c for c in absent if c not in OPTIONAL_SCHEMA.names]
                if missing:
                    raise MmsaeError(f"metadata {path} lacks column(s) {', '.join(missing)}")
                if f.metadata.num_rows != info.n_rows:
                    raise MmsaeError(
                        f"metadata {path} has {f.metadata.num_rows} rows, its shard {info.n_rows}; "
                        "the store is damaged (`mmsae info STORE --check` lists what)"
                    )
                table = f.read(columns=[c for c in wanted if c not in absent])
        except (OSError, pa.ArrowException) as exc:
            raise MmsaeError(
                f"metadata {path} is missing or damaged: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        for c in absent:  # optional columns the shard predates
            table = table.append_column(_FULL_SCHEMA.field(c), pa.nulls(info.n_rows, _FULL_SCHEMA.field(c).type))
        return _conform(table.select(wanted), path)

    def metadata(self, columns: Iterable[str] | None = None) -> pa.Table:
        """The metadata of every row, in row order."""
        if columns is None:
            if self._meta is None:
                tables = [self.shard_metadata(i) for i in range(len(self.shards))]
                self._meta = pa.concat_tables(tables) if tables else _FULL_SCHEMA.empty_table()
            return self._meta
        tables = [self.shard_metadata(i, columns) for i in range(len(self.shards))]
        if not tables:
            return _FULL_SCHEMA.empty_table().select(list(columns))
        return pa.concat_tables(tables)

    def _values(self, rows: Sequence[int] | np.ndarray, column: str) -> list:
        """One metadata column's values at the given global rows, in the order given; reads only the
        shards those rows are in."""
        rows_N = np.asarray(rows, dtype=np.int64).reshape(-1)
        out: list = [None] * len(rows_N)
        if len(rows_N) == 0:
            return out
        if rows_N.min() < 0 or rows_N.max() >= len(self):
            raise MmsaeError(f"row ids out of range [0, {len(self)})")
        shard_N = np.searchsorted(self._starts_S, rows_N, side="right") - 1
        for s in np.unique(shard_N):
            sel = np.nonzero(shard_N == s)[0]
            col = self.shard_metadata(int(s), [column]).column(column)
            local = (rows_N[sel] - self._starts_S[s]).tolist()
            values = col.take(pa.array(local, pa.int64())).to_pylist()
            for i, v in zip(sel.tolist(), values):
                out[i] = v
        return out

    def labels(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """A short label per row, for listings: its text (a caption), else its source (an image
        path or URL), else `row N`. Reads the metadata of the shards the rows are in: ask once for
        every row a listing shows, not row by row."""
        rows_N = np.asarray(rows, dtype=np.int64).reshape(-1)
        texts, sources = self._values(rows_N, "text"), self._values(rows_N, "source")
        return [t or s or f"row {int(r)}" for r, t, s in zip(rows_N, texts, sources)]

    def extras(self, rows: Sequence[int] | np.ndarray) -> list[dict | None]:
        """The extra metadata of each row (the import's other columns, `OPTIONAL_SCHEMA`'s `extra`),
        as a dict; None where a row has none, or its value is not a JSON object."""
        import json

        out: list[dict | None] = []
        for v in self._values(rows, "extra"):
            try:
                obj = json.loads(v) if v else None
            except (ValueError, RecursionError):
                obj = None
            out.append(obj if isinstance(obj, dict) else None)
        return out

    def modalities(self) -> np.ndarray:
        """Modality name of every row (object array)."""
        return column_array(self.metadata(["modality"]), "modality")

    def pair_ids(self) -> np.ndarray:
        return column_array(self.metadata(["pair_id"]), "pair_id")

    def rows(self, modality: str | None = None, pair_ids: Iterable[int] | None = None) -> np.ndarray:
        """Global row ids matching a modality and/or a set of pair ids."""
        keep = np.ones(len(self), dtype=bool)
        if modality is not None:
            if modality not in self.manifest.counts:
                raise MmsaeError(f"modality {modality!r} not in store (has {sorted(self.manifest.counts)})")
            keep &= self.modalities() == modality
        if pair_ids is not None:
            keep &= np.isin(self.pair_ids(), np.fromiter(pair_ids, dtype=np.int64))
        return np.nonzero(keep)[0]

    def pairs(self, image: str = "image", text: str = "text") -> tuple[np.ndarray, np.ndarray]:
        """(image_rows, text_rows): one entry per text row whose pair id has an image row.

        Many captions of one image give many pairs that share the image row.
        """
        mods = self.modalities()
        pids = self.pair_ids()
        img_mask = (mods == image) & (pids != NO_PAIR)
        txt_mask = (mods == text) & (pids != NO_PAIR)
        img_rows = np.nonzero(img_mask)[0]
        img_pids = pids[img_rows]
        order = np.argsort(img_pids, kind="stable")
        img_pids_sorted, img_rows_sorted = img_pids[order], img_rows[order]
        # one image row per pair id: the first
        uniq, first = np.unique(img_pids_sorted, return_index=True)
        txt_rows = np.nonzero(txt_mask)[0]
        pos = np.searchsorted(uniq, pids[txt_rows])
        pos_clipped = np.minimum(pos, max(len(uniq) - 1, 0))
        found = (len(uniq) > 0) & (uniq[pos_clipped] == pids[txt_rows]) if len(uniq) else np.zeros(len(txt_rows), bool)
        return img_rows_sorted[first[pos_clipped[found]]], txt_rows[found]

    def check(self, block_rows: int = 65536) -> list[str]:
        """Every way the store's files disagree with its manifest, one line each (empty: sound).

        Reads every shard whole: both files load, shapes, dtypes and row counts match the
        manifest, row ids run on, the modality counts add up, and no embedding is NaN or inf."""
        problems: list[str] = []
        counts: Counter = Counter()
        for i, info in enumerate(self.shards):
            try:
                emb = self.shard_embeddings(i)
                if emb.dtype != np.dtype(self.manifest.dtype):
                    problems.append(f"shard {info.name}: dtype {emb.dtype}, manifest says {self.manifest.dtype}")
                for a in range(0, info.n_rows, block_rows):
                    bad = np.nonzero(~np.isfinite(np.asarray(emb[a : a + block_rows], dtype=np.float32)).all(1))[0]
                    if len(bad):
                        rows = ", ".join(str(info.row_start + a + int(r)) for r in bad[:5])
                        problems.append(
                            f"shard {info.name}: {len(bad)} row(s) hold NaN/inf (rows {rows}"
                            f"{', ...' if len(bad) > 5 else ''})"
                        )
                meta = self.shard_metadata(i, ["row_id", "modality"])
                row_ids = column_array(meta, "row_id")
                if not np.array_equal(row_ids, np.arange(info.row_start, info.row_start + info.n_rows)):
                    problems.append(
                        f"shard {info.name}: row ids do not run {info.row_start} … {info.row_start + info.n_rows - 1}"
                    )
                counts.update(column_array(meta, "modality").tolist())
            except MmsaeError as exc:
                problems.append(str(exc))
        if not problems and dict(counts) != self.manifest.counts:
            problems.append(f"rows by modality are {dict(counts)}, the manifest says {self.manifest.counts}")
        return problems


class StoreLock:
    """The store's writer lock: one writing process at a time, readers never blocked.

    A second writer waits, saying so on stderr, until the first is done (then it reads the
    manifest the first one left, so both writers' rows are kept). `fcntl.flock` is released by
    the kernel when its holder exits or is killed, so a crashed writer never leaves the store
    locked. A second writer inside the same process would wait for itself forever; it is refused."""

    def __init__(self, root: Path):
        self.root = root
        self._fd: int | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MmsaeError(f"cannot write a store at {root}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            if holder == str(os.getpid()):
                self.release()
                raise MmsaeError(
                    f"store {root} is already open for writing in this process; close that writer first"
                ) from None
            print(
                f"mmsae: store {root} is being written by another process (pid {holder or '?'}); "
                "waiting for it to finish ...",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing the descriptor drops the flock

    def __del__(self):
        self.release()


@dataclass
class _Pending:
    emb: list[np.ndarray]
    meta: list[dict[str, list]]
    n: int = 0
    consumed: int = 0
    """Input units (rows, or items such as images, some of which may be skipped) these rows used up."""


class StoreWriter:
    """Appends rows to a store in chunks; each full chunk becomes one atomically committed shard.

    The writer holds the store's `StoreLock` from construction to `close()` (or the end of a
    `with` block); everything it reads of the store (manifest, orphans to clean) it reads under
    that lock. A `job` key makes writing resumable: the manifest records how many input units of
    that job are committed (rows by default; `append(consumed=...)` counts items that may yield
    no row, such as unreadable images), so a re-run of the same command skips them (`rows_done`)
    instead of duplicating. `before_commit` runs before each manifest write (e.g. to save a side
    report that must never lag the committed rows).

    `local_pair_ids=True` says the pair ids given are numbered by this writer's input alone
    (row positions in an imported file): they are shifted past every pair id the store already
    uses, so two imports never pair with each other. Otherwise pair ids are kept as given (ids
    the user chose, e.g. COCO image ids, which are meant to join rows across writers).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        dim: int,
        dtype: str | None = None,
        model_id: str = "unknown",
        preprocessing: dict | None = None,
        shard_rows: int = 65536,
        job: str | None = None,
        before_commit=None,
        local_pair_ids: bool = False,
    ):
        if dtype is not None and dtype not in SUPPORTED_DTYPES:
            raise MmsaeError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype!r}")
        if dim <= 0:
            raise MmsaeError(f"embedding dim must be positive, got {dim}")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise MmsaeError(f"{self.root} is a file, not a store folder")
        self.shard_rows = int(shard_rows)
        self.job = job
        self.before_commit = before_commit
        self._lock = StoreLock(self.root)
        try:
            self._open(dim, dtype, model_id, preprocessing)
        except BaseException:
            self._lock.release()
            raise
        m = self.manifest
        if m.next_pair_id is None:  # a store from before pair ids were namespaced
            m.next_pair_id = _next_pair_id(self.root, m)
        if not local_pair_ids:
            self.pair_base = 0
        elif job is not None and job in m.jobs:  # resuming: the shift it began with (0 before shifts existed)
            self.pair_base = m.pair_bases.get(job, 0)
        else:
            self.pair_base = m.next_pair_id
        self._pending = _Pending([], [])
        self._pending_max_pid = NO_PAIR

    def _open(self, dim: int, dtype: str | None, model_id: str, preprocessing: dict | None) -> None:
        (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        if (self.root / MANIFEST_NAME).exists():
            self.manifest = read_manifest(self.root)
            if self.manifest.dim != dim:
                raise MmsaeError(
                    f"dimension mismatch: store {self.root} holds {self.manifest.dim}-d embeddings, input is {dim}-d"
                )
            if dtype is not None and dtype != self.manifest.dtype and self.manifest.n_rows:
                raise MmsaeError(
                    f"store {self.root} holds {self.manifest.dtype} embeddings; appending {dtype} ones "
                    f"would mix the two: leave out --dtype (rows are stored as {self.manifest.dtype}) "
                    "or write a new store"
                )
            if self.manifest.n_rows and model_id != "unknown" and self.manifest.model_id not in ("unknown", model_id):
                raise MmsaeError(
                    f"model mismatch: store {self.root} holds {self.manifest.model_id!r} embeddings, input is {model_id!r}"
                )
            if self.manifest.model_id == "unknown":
                self.manifest.model_id = model_id
            if not self.manifest.n_rows and dtype is not None:
                self.manifest.dtype = dtype
        else:
            self.manifest = Manifest(
                dim=dim,
                dtype=dtype or "float32",
                model_id=model_id,
                preprocessing=dict(preprocessing or {}),
                next_pair_id=0,
            )
            write_manifest(self.root, self.manifest)
        self._clean_orphans()

    @property
    def rows_done(self) -> int:
        """Rows of this writer's job already committed by earlier runs."""
        return self.manifest.jobs.get(self.job, 0) if self.job else 0

    def _clean_orphans(self) -> None:
        """Files of shards no manifest lists: left by a writer that was killed before its commit.
        Runs under the lock, so they cannot belong to a writer still at work."""
        listed = {s.name for s in self.manifest.shards}
        for p in (self.root / SHARD_DIR).iterdir():
            stem = p.name.split(".")[0]
            if stem not in listed or ".tmp" in p.name:
                p.unlink(missing_ok=True)
        from mmsae.fileio import remove_stale_tmp

        remove_stale_tmp(self.root)

    def _pair_ids(self, pair_id, n: int) -> np.ndarray:
        if pair_id is None:
            return np.full(n, NO_PAIR, dtype=np.int64)
        try:
            pids = np.asarray(pair_id, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise MmsaeError("pair ids must be integers") from None
        if len(pids) and pids.min() < NO_PAIR:
            raise MmsaeError(f"pair ids must be non-negative ({NO_PAIR} for no pair), got {int(pids.min())}")
        if self.pair_base and len(pids):
            pids = np.where(pids != NO_PAIR, pids + self.pair_base, NO_PAIR)
        return pids

    def append(
        self,
        emb_ND: np.ndarray,
        modality: str | Sequence[str],
        pair_id: Sequence[int] | np.ndarray | None = None,
        source: Sequence[str | None] | str | None = None,
        text: Sequence[str | None] | None = None,
        consumed: int | None = None,
        extra: Sequence[str | None] | None = None,
    ) -> None:
        """Add rows; `consumed` input units (default: one per row) are committed with them.
        `extra`: a JSON object (as a string) of further metadata per row, or None.

        With `consumed` given, rows and units need not match one to one (skipped items), so the
        batch is never split across two commits: it starts a new shard if it would not fit.
        """
        emb_ND = np.asarray(emb_ND)
        if emb_ND.ndim != 2 or emb_ND.shape[1] != self.manifest.dim:
            raise MmsaeError(f"expected an [N, {self.manifest.dim}] array, got shape {emb_ND.shape}")
        n = emb_ND.shape[0]
        if n == 0:
            self._pending.consumed += 0 if consumed is None else int(consumed)
            return
        if not np.isfinite(emb_ND).all():
            raise MmsaeError("refusing to store non-finite (NaN/inf) embeddings")
        mods = [modality] * n if isinstance(modality, str) else list(modality)
        pids = self._pair_ids(pair_id, n)
        srcs = [source] * n if source is None or isinstance(source, str) else list(source)
        texts = [None] * n if text is None else list(text)
        extras = [None] * n if extra is None else list(extra)
        if not (len(mods) == len(pids) == len(srcs) == len(texts) == len(extras) == n):
            raise MmsaeError("metadata columns must have one entry per embedding row")
        with np.errstate(over="ignore"):
            stored = emb_ND.astype(self.manifest.dtype, copy=False)
        if not np.isfinite(stored).all():
            raise MmsaeError(f"embeddings overflow {self.manifest.dtype}; use a float32 store")
        atomic = consumed is not None
        if atomic and self._pending.n and self._pending.n + n > self.shard_rows:
            self.flush()
        start = 0
        while start < n:
            take = n - start if atomic else min(n - start, self.shard_rows - self._pending.n)
            sl = slice(start, start + take)
            self._pending.emb.append(np.ascontiguousarray(stored[sl]))
            self._pending.meta.append(
                {
                    "modality": mods[sl],
                    "pair_id": pids[sl].tolist(),
                    "source": srcs[sl],
                    "text": texts[sl],
                    "extra": extras[sl],
                }
            )
            if take:
                self._pending_max_pid = max(self._pending_max_pid, int(pids[sl].max()))
            self._pending.n += take
            self._pending.consumed += int(consumed) if atomic else take
            start += take
            if self._pending.n >= self.shard_rows:
                self.flush()

    def flush(self) -> None:
        """Commit pending rows as one shard (atomic: files renamed into place, then the manifest)."""
        if self._pending.n == 0:
            if self._pending.consumed and self.job:  # items that yielded no row still count as done
                self._commit(self._pending.consumed)
            self._pending = _Pending([], [])
            return
        emb = np.concatenate(self._pending.emb)
        n = len(emb)
        row_start = self.manifest.n_rows
        name = f"shard-{len(self.manifest.shards):06d}"
        cols: dict[str, list] = {"modality": [], "pair_id": [], "source": [], "text": [], "extra": []}
        for m in self._pending.meta:
            for k in cols:
                cols[k].extend(m[k])
        table = pa.table(
            {
                "row_id": pa.array(np.arange(row_start, row_start + n, dtype=np.int64)),
                "modality": pa.array(cols["modality"], pa.string()),
                "pair_id": pa.array(cols["pair_id"], pa.int64()),
                "source": pa.array(cols["source"], pa.string()),
                "text": pa.array(cols["text"], pa.string()),
                "model_id": pa.array([self.manifest.model_id] * n, pa.string()),
            },
            schema=METADATA_SCHEMA,
        )
        if any(e is not None for e in cols["extra"]):  # only then: other shards keep the older layout
            table = table.append_column(OPTIONAL_SCHEMA.field("extra"), pa.array(cols["extra"], pa.string()))
        self._place_shard(name, table, lambda tmp: _save_npy(tmp, emb))
        self._add_shard(name, n, Counter(cols["modality"]))
        self._commit(self._pending.consumed)
        self._pending = _Pending([], [])

    def _place_shard(self, name: str, table: pa.Table, write_npy) -> None:
        """Both files of a new shard, renamed into place; invisible until the manifest lists it.
        A failure (a full disk) removes what it wrote and says so in one line."""
        shard_dir = self.root / SHARD_DIR
        tmp_npy, tmp_pq = shard_dir / f"{name}.tmp.npy", shard_dir / f"{name}.tmp.parquet"
        try:
            write_npy(tmp_npy)
            pq.write_table(table, tmp_pq)
            os.replace(tmp_npy, shard_dir / f"{name}.npy")
            os.replace(tmp_pq, shard_dir / f"{name}.parquet")
        except OSError as exc:
            for p in (tmp_npy, tmp_pq, shard_dir / f"{name}.npy", shard_dir / f"{name}.parquet"):
                p.unlink(missing_ok=True)
            raise MmsaeError(
                f"cannot write shard {name} of {self.root}: {exc.strerror or exc}; "
                "the store keeps every row committed before"
            ) from None

    def _add_shard(self, name: str, n: int, counts: Counter) -> None:
        self.manifest.shards.append(ShardInfo(name=name, n_rows=n, row_start=self.manifest.n_rows))
        for m, c in counts.items():
            self.manifest.counts[m] = self.manifest.counts.get(m, 0) + c

    def adopt(self, src: EmbeddingStore, shard: int) -> None:
        """Append shard `shard` of another store of the same dim/dtype (e.g. one rank's part),
        renumbering its rows (and shifting its pair ids, with `local_pair_ids`); the embedding
        file is hard-linked where possible. Nothing is visible until `commit`."""
        self.flush()
        info = src.shards[shard]
        if src.dim != self.manifest.dim or src.manifest.dtype != self.manifest.dtype:
            raise MmsaeError(
                f"cannot merge a {src.dim}-d {src.manifest.dtype} shard into a {self.manifest.dim}-d "
                f"{self.manifest.dtype} store"
            )
        row_start = self.manifest.n_rows
        name = f"shard-{len(self.manifest.shards):06d}"
        table = src.shard_metadata(shard)
        for c in OPTIONAL_SCHEMA.names:  # read as nulls from a shard without it: not written either
            if table.column(c).null_count == table.num_rows:
                table = table.drop_columns([c])
        table = table.set_column(0, "row_id", pa.array(np.arange(row_start, row_start + info.n_rows, dtype=np.int64)))
        pids = self._pair_ids(column_array(table, "pair_id"), info.n_rows)
        table = table.set_column(table.column_names.index("pair_id"), "pair_id", pa.array(pids, pa.int64()))
        if len(pids):
            self._pending_max_pid = max(self._pending_max_pid, int(pids.max()))
        src_npy = src.root / SHARD_DIR / f"{info.name}.npy"

        def link(tmp: Path) -> None:
            tmp.unlink(missing_ok=True)
            try:
                os.link(src_npy, tmp)
            except OSError:
                import shutil

                shutil.copyfile(src_npy, tmp)

        self._place_shard(name, table, link)
        self._add_shard(name, info.n_rows, Counter(column_array(table, "modality").tolist()))

    def commit(self, consumed: int = 0) -> None:
        """Write the manifest: adopted shards become visible, `consumed` units count for the job."""
        self.flush()
        self._commit(consumed)

    def _commit(self, consumed: int) -> None:
        if self.before_commit is not None:
            self.before_commit()
        m = self.manifest
        if self.job:
            m.jobs[self.job] = m.jobs.get(self.job, 0) + consumed
            if self.pair_base:
                m.pair_bases[self.job] = self.pair_base
        m.next_pair_id = max(m.next_pair_id or 0, self._pending_max_pid + 1)
        write_manifest(self.root, m)

    def close(self) -> EmbeddingStore:
        """Commit what is pending and give up the lock."""
        try:
            self.flush()
        finally:
            self._lock.release()
        return EmbeddingStore(self.root)

    def release(self) -> None:
        """Give up the lock without committing what is pending (it is re-done on resume)."""
        self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On error, commit nothing more: what was flushed is whole, the rest is re-done on resume.
        try:
            if exc_type is None:
                self.flush()
        finally:
            self._lock.release()


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


def _next_pair_id(root: Path, manifest: Manifest) -> int:
    """One past the largest pair id of the store's rows (stores that predate `next_pair_id`)."""
    if not manifest.shards:
        return 0
    store = EmbeddingStore(root)
    store.manifest = manifest
    pids = store.pair_ids()
    return int(pids.max()) + 1 if len(pids) else 0


def record_setting(root: str | os.PathLike, key: str, value: object, flag: str) -> bool:
    """Record `value` under `key` in the store's preprocessing settings (under the writer lock).
    True if it was new; a different value already recorded is refused rather than replaced,
    since other rows may depend on it. `flag` names the option in the error."""
    with StoreWriter(root, dim=read_manifest(Path(root)).dim) as writer:
        refuse_other_setting(writer.manifest.preprocessing, root, key, value, flag)
        if writer.manifest.preprocessing.get(key) == value:
            return False
        writer.manifest.preprocessing[key] = value
        writer.commit()
    return True


def refuse_other_setting(preprocessing: dict, root, key: str, value: object, flag: str) -> None:
    """A one-line error when the store already records another value under `key`: also checked
    before an import starts, so a conflict writes nothing."""
    held = preprocessing.get(key)
    if held is not None and held != value:
        raise MmsaeError(f"store {root} already records {flag} {held!r}; import into a new store to use another")
