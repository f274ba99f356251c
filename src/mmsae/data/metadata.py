"""Per-row metadata of an import: a CSV, JSONL or parquet table describing the embedding rows.

`mmsae import ... --metadata FILE` and `mmsae import --clip-retrieval DIR` read the same columns:

- `image_path` (or, where it is absent or empty, `url`): the `source` of the rows it describes;
  an image path is relative to the store's image root (`--image-root`), a URL is only ever shown
  as a link, never fetched;
- `caption`: their `text`;
- `pair_id`: their pair ids (integers, still numbered by the import alone and shifted past the
  store's own, like every import's);
- `row`: when present (in `--metadata` files), the embedding row each metadata row describes, so
  the rows may come in any order; every row must be covered exactly once;
- any other column: kept as extra metadata, one JSON object a row (the store's optional `extra`
  column), without its empty values.

Every problem is a one-line `MmsaeError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmsae.data.store import NO_PAIR
from mmsae.errors import MmsaeError

METADATA_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File suffix → reader."""
STRING_COLUMNS = ("image_path", "url", "caption")
KNOWN_COLUMNS = ("row", *STRING_COLUMNS, "pair_id")


@dataclass
class RowMetadata:
    """What a metadata table says about n rows, in row order (entry i describes row i)."""

    n: int
    source: list[str | None] | None
    """`image_path`, else `url`, per row; None when the table has neither column."""
    caption: list[str | None] | None
    pair_id: np.ndarray | None
    """int64, `NO_PAIR` where empty; None when the table has no `pair_id` column."""
    extra: list[str | None] | None
    """A JSON object a row (None for a row without extra values); None when there are no extra columns."""

    @property
    def columns(self) -> list[str]:
        """The known columns the table had (for messages and checks)."""
        return [
            name
            for name, v in (("source", self.source), ("caption", self.caption), ("pair_id", self.pair_id))
            if v is not None
        ]


def read_metadata_table(path: str | os.PathLike) -> pa.Table:
    """The whole table of a CSV (`.csv`, `.tsv`), JSON-lines (`.jsonl`, `.ndjson`, `.json`) or parquet
    (`.parquet`, `.pq`) file. CSV columns named `image_path`, `url` and `caption` are read as text
    (a file named `001` stays `001`)."""
    path = Path(path)
    fmt = METADATA_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MmsaeError(
            f"{path}: metadata must be CSV, JSONL or parquet (a file ending in {', '.join(METADATA_FORMATS)})"
        )
    if not path.exists():
        raise MmsaeError(f"{path}: no such file")
    if path.is_dir():
        raise MmsaeError(f"{path}: is a directory, expected a metadata file")
    try:
        if fmt in ("csv", "tsv"):
            import pyarrow.csv as pcsv

            return pcsv.read_csv(
                path,
                parse_options=pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in STRING_COLUMNS}),
            )
        if fmt == "json":
            import pyarrow.json as pjson

            return pjson.read_json(path)
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            return f.read()
    except OSError as exc:
        if isinstance(exc, pa.ArrowException):  # ArrowIOError is an OSError too
            raise MmsaeError(f"{path}: cannot read as {fmt.upper()} ({_first_line(exc)})") from None
        raise MmsaeError(f"{path}: cannot read ({exc.strerror or _first_line(exc)})") from None
    except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
        hint = "; expected one JSON object a line" if fmt == "json" else ""
        raise MmsaeError(f"{path}: cannot read as {fmt.upper()} ({_first_line(exc)}){hint}") from None


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return s.splitlines()[0][:200] if s else type(exc).__name__


def _strings(table: pa.Table, name: str, path: Path) -> list[str | None] | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    typ = col.type
    if pa.types.is_dictionary(typ) and (pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)):
        col = col.cast(typ.value_type)
    elif not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
        raise MmsaeError(f"{path}: column {name!r} holds {typ}, expected text (one string a row)")
    if name != "caption" and any("\x00" in s for s in col.drop_null().to_pylist()):
        raise MmsaeError(f"{path}: column {name!r} holds a NUL character")
    return col.to_pylist()


def _integers(table: pa.Table, name: str, path: Path, nulls: bool) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    if not (pa.types.is_integer(col.type) or (pa.types.is_null(col.type) and nulls)):
        raise MmsaeError(f"{path}: column {name!r} holds {col.type}, expected integers")
    if col.null_count and not nulls:
        raise MmsaeError(f"{path}: column {name!r} has {col.null_count} empty value(s)")
    values = col.to_pylist()
    try:
        return np.array([NO_PAIR if v is None else v for v in values], dtype=np.int64)
    except OverflowError:
        raise MmsaeError(f"{path}: column {name!r} holds integers too large for int64") from None


def _jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _extras(table: pa.Table, names: list[str]) -> list[str | None] | None:
    if not names:
        return None
    from mmsae.fileio import json_safe

    cols = {name: table.column(name).to_pylist() for name in names}
    out: list[str | None] = []
    for i in range(table.num_rows):
        row = {name: _jsonable(values[i]) for name, values in cols.items() if values[i] is not None}
        out.append(
            json.dumps(json_safe(row), ensure_ascii=False, allow_nan=False, separators=(",", ":")) if row else None
        )
    return out


def describe_rows(table: pa.Table, path: str | os.PathLike, n: int, *, keyed: bool = True) -> RowMetadata:
    """What `table` says about `n` rows: one metadata row per row in order, or (with `keyed` and a
    `row` column) each metadata row for the row it names, every row exactly once."""
    path = Path(path)
    if len(set(table.column_names)) != len(table.column_names):
        raise MmsaeError(f"{path}: two columns share a name")
    index = [c for c in table.column_names if re.fullmatch(r"__index_level_\d+__", c)]
    table = table.drop_columns(index)  # a pandas index written as a column: not metadata
    if keyed and "row" in table.column_names:
        rows = _integers(table, "row", path, nulls=False)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            bad = int(rows[(rows < 0) | (rows >= n)][0])
            raise MmsaeError(f"{path}: row {bad} out of range: there are {n} embedding rows (0 … {n - 1})")
        counts = np.bincount(rows, minlength=n)
        if (counts > 1).any():
            dup = np.nonzero(counts > 1)[0]
            raise MmsaeError(
                f"{path}: row {int(dup[0])} is described {int(counts[dup[0]])} times"
                + (f" ({len(dup)} rows more than once)" if len(dup) > 1 else "")
                + "; give each embedding row one metadata row"
            )
        if (counts == 0).any():
            miss = np.nonzero(counts == 0)[0]
            shown = ", ".join(str(int(r)) for r in miss[:5]) + (", ..." if len(miss) > 5 else "")
            raise MmsaeError(
                f"{path}: {len(miss)} of {n} embedding rows have no metadata row (row {shown}); "
                "every row must be listed once"
            )
        table = table.take(pa.array(np.argsort(rows, kind="stable")))
        rest = [c for c in table.column_names if c != "row"]
    else:
        if table.num_rows != n:
            raise MmsaeError(
                f"{path}: {table.num_rows} metadata rows for {n} embedding rows; give one a row, in order, "
                "or a 'row' column saying which row each describes"
            )
        rest = list(table.column_names)
    image_path = _strings(table, "image_path", path)
    url = _strings(table, "url", path)
    if image_path is not None:
        source = [p if p else u for p, u in zip(image_path, url or [None] * n)]
    else:
        source = url
    used = {"image_path", "caption", "pair_id"} | ({"url"} if image_path is None else set())
    pair_id = _integers(table, "pair_id", path, nulls=True)
    if pair_id is not None and len(pair_id) and pair_id.min() < NO_PAIR:
        raise MmsaeError(f"{path}: column 'pair_id' holds {int(pair_id.min())}; pair ids must be non-negative")
    return RowMetadata(
        n=n,
        source=source,
        caption=_strings(table, "caption", path),
        pair_id=pair_id,
        extra=_extras(table, [c for c in rest if c not in used]),
    )


def web_link(s: object) -> str | None:
    """`s` if it is an http(s) address (and no longer than 2048 characters, without spaces or
    control characters), else None: what the explorer may show as a link. Never fetched."""
    if not isinstance(s, str) or len(s) > 2048 or not re.match(r"https?://[^/\\\s]", s, re.IGNORECASE):
        return None
    return None if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in s) else s


def read_row_metadata(path: str | os.PathLike, n: int) -> RowMetadata:
    """`describe_rows(read_metadata_table(path), path, n)`."""
    return describe_rows(read_metadata_table(path), path, n)
