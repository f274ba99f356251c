"""The store's manifest: what a store holds, in one versioned JSON file.

A shard exists for readers only once the manifest lists it, and the manifest is replaced
atomically, so an interrupted writer never leaves a half-visible shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


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
    def from_json(cls, obj: dict[str, Any]) -> "Manifest":
        version = int(obj.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise MmsaeError(
                f"store schema version {version} is newer than this mmsae supports ({SCHEMA_VERSION}); upgrade mmsae"
            )
        shards = [ShardInfo(**s) for s in obj.get("shards", [])]
        return cls(
            dim=int(obj["dim"]),
            dtype=str(obj["dtype"]),
            model_id=str(obj.get("model_id", "unknown")),
            preprocessing=dict(obj.get("preprocessing", {})),
            shards=shards,
            counts={str(k): int(v) for k, v in obj.get("counts", {}).items()},
            jobs={str(k): int(v) for k, v in obj.get("jobs", {}).items()},
            schema_version=version,
        )


def read_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.exists():
        raise MmsaeError(f"{root} is not an mmsae store (no {MANIFEST_NAME})")
    try:
        obj = json.loads(path.read_text())
        return Manifest.from_json(obj)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MmsaeError(f"{path} is damaged: {exc}") from None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see either the old file or the new one, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(root: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(root) / MANIFEST_NAME, manifest.to_json())
