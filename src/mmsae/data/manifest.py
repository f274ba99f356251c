"""The store's manifest: what a store holds, in one versioned JSON file.

A shard exists for readers only once the manifest lists it, and the manifest is replaced
atomically, so an interrupted writer never leaves a half-visible shard.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError
from mmsae.fileio import write_json_atomic

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TEXT_ENCODER_KEY = "text_encoder"
"""Preprocessing setting: the text encoder (a backend spec) that embeds words into the store's
space, recorded by `mmsae import --text-encoder` so commands that embed text need not be told."""
SUPPORTED_DTYPES = ("float32", "float16")
_SHARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A shard's file stem: no separators, so a hand-edited manifest cannot point outside `shards/`."""


@dataclass
class ShardInfo:
    """One committed shard: an embedding array and its metadata table."""

    name: str
    """File stem; the shard lives in `shards/{name}.npy` and `shards/{name}.parquet`."""
    n_rows: int
    """Rows in this shard."""
    row_start: int
    """Global row id of the shard's first row."""


@dataclass
class Manifest:
    """Everything a reader needs to know about a store without opening its shards."""

    dim: int
    """Embedding dimension D; every row of every shard has it."""
    dtype: str
    """On-disk dtype of the embeddings: `float32` or `float16`."""
    model_id: str = "unknown"
    """The model that produced the embeddings (e.g. `open_clip:ViT-B-32/openai`)."""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    """How embeddings were made (e.g. `{"l2_normalized": true}`); free-form, recorded for provenance."""
    shards: list[ShardInfo] = field(default_factory=list)
    """Committed shards, in row order."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows per modality."""
    jobs: dict[str, int] = field(default_factory=dict)
    """Rows committed per resumable writing job (key: a fingerprint of the job's inputs)."""
    next_pair_id: int | None = None
    """The lowest pair id no row uses yet. Each writer shifts the pair ids it is given by the value
    this had when it started, so two imports that both number their pairs from 0 never join an
    image of one to a caption of the other. None in stores written before it existed (then it is
    worked out from the rows)."""
    pair_bases: dict[str, int] = field(default_factory=dict)
    """The shift each resumable job got, so a resumed job keeps numbering its pairs as it began."""
    schema_version: int = SCHEMA_VERSION
    """Version of this layout; readers refuse newer ones."""

    @property
    def n_rows(self) -> int:
        return sum(s.n_rows for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["n_rows"] = self.n_rows
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Manifest:
        """Checked field by field: a damaged or hand-edited manifest is refused with what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        version = _int(obj.get("schema_version", 0), "schema_version")
        if version > SCHEMA_VERSION:
            raise MmsaeError(
                f"store schema version {version} is newer than this mmsae supports ({SCHEMA_VERSION}); upgrade mmsae"
            )
        dim = _int(obj.get("dim"), "dim")
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        dtype = obj.get("dtype")
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype!r}")
        shards, start = [], 0
        for i, sh in enumerate(_typed(obj.get("shards", []), list, "shards")):
            sh = _typed(sh, dict, f"shards[{i}]")
            name = sh.get("name")
            if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
                raise ValueError(f"shards[{i}].name {name!r} is not a shard file name")
            n, row_start = (
                _int(sh.get("n_rows"), f"shards[{i}].n_rows"),
                _int(sh.get("row_start"), f"shards[{i}].row_start"),
            )
            if n < 0 or row_start != start:
                raise ValueError(
                    f"shards[{i}] ({name}) starts at row {row_start} with {n} rows; expected to start at {start}"
                )
            shards.append(ShardInfo(name=name, n_rows=n, row_start=row_start))
            start += n
        model_id = obj.get("model_id", "unknown")
        if not isinstance(model_id, str):
            raise ValueError(f"model_id must be a string, got {model_id!r}")
        next_pid = obj.get("next_pair_id")
        return cls(
            dim=dim,
            dtype=dtype,
            model_id=model_id,
            preprocessing=dict(_typed(obj.get("preprocessing", {}), dict, "preprocessing")),
            shards=shards,
            counts=_int_map(obj.get("counts", {}), "counts"),
            jobs=_int_map(obj.get("jobs", {}), "jobs"),
            next_pair_id=None if next_pid is None else _int(next_pid, "next_pair_id"),
            pair_bases=_int_map(obj.get("pair_bases", {}), "pair_bases"),
            schema_version=version,
        )


def _typed(v: Any, typ: type, what: str) -> Any:
    if not isinstance(v, typ):
        raise ValueError(f"{what} must be a JSON {'array' if typ is list else 'object'}, got {type(v).__name__}")
    return v


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} must be an integer, got {v!r}")
    return v


def _int_map(v: Any, what: str) -> dict[str, int]:
    out = {str(k): _int(x, f"{what}[{k!r}]") for k, x in _typed(v, dict, what).items()}
    if any(x < 0 for x in out.values()):
        raise ValueError(f"{what} holds a negative count")
    return out


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise MmsaeError(f"{root} is not an mmsae store (no {MANIFEST_NAME})")
    try:
        obj = json.loads(path.read_bytes())
        return Manifest.from_json(obj)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise MmsaeError(f"{path} is damaged: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except OSError as exc:
        raise MmsaeError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_manifest(root: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(root) / MANIFEST_NAME, manifest.to_json())
