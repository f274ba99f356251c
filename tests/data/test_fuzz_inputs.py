"""Random files where users' data comes in (hypothesis): embedding files of any dtype, shape and
damage; manifests and metadata mutated field by field; config files of random options. The
property: exit 0 with a sound result, or exit 2 with one line, and a failed command leaves the
store's bytes as they were."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("hypothesis", reason="install the [test] extra (hypothesis)")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmsae.cli.main import main  # noqa: E402
from mmsae.data.store import EmbeddingStore  # noqa: E402

EXAMPLES = int(os.environ.get("MMSAE_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") is not None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _clean_exit(capfd, rc, what):
    err = capfd.readouterr().err
    assert "Traceback" not in err and rc in (0, 2), (what, rc, err[-1500:])
    if rc == 2:
        lines = [ln for ln in err.replace("\r", "\n").splitlines() if "error:" in ln]
        assert len(lines) == 1, (what, err[-1500:])
    return rc


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".writer.lock":
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def _reads_cleanly(capfd, store, what) -> None:
    """`info --check` and a short training on a damaged store: each exits cleanly, and one that
    refuses leaves the store's bytes as they were."""
    before = _digest(store)
    train = [
        "train",
        str(store),
        "--out",
        str(store.parent / "sae"),
        "--steps",
        "2",
        "--batch-size",
        "64",
        "--dict-size",
        "8",
        "--k",
        "2",
        "--json",
    ]
    for argv in (["info", str(store), "--check"], train):
        if _clean_exit(capfd, main(argv), (what, argv)) == 2:
            assert _digest(store) == before, (what, argv)


_DTYPES = ["float16", "float32", "float64", "int8", "int32", "uint8", "bool", "complex64"]


@SETTINGS
@given(
    fmt=st.sampled_from(["npy", "npz", "safetensors", "pt", "parquet"]),
    dtype=st.sampled_from(_DTYPES),
    shape=st.lists(st.integers(0, 7), min_size=0, max_size=3),
    nan=st.booleans(),
    big=st.booleans(),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    drop=st.booleans(),
    key=st.sampled_from([None, "x", "emb"]),
)
def test_random_embedding_files(tmp_path_factory, capfd, fmt, dtype, shape, nan, big, cut, drop, key):
    import torch
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("in")
    arr = np.ones(shape, dtype=dtype) if shape else np.array(1, dtype=dtype)
    if arr.size and np.issubdtype(arr.dtype, np.floating):
        flat = arr.reshape(-1)
        if nan:
            flat[0] = np.nan
        if big and arr.dtype == np.float64:
            flat[-1] = 1e300
    path = d / f"e.{fmt}"
    try:
        if fmt == "npy":
            np.save(path, arr)
        elif fmt == "npz":
            np.savez(path, emb=arr)
        elif fmt == "safetensors":
            save_file({"emb": arr}, str(path))
        elif fmt == "pt":
            torch.save({"emb": torch.from_numpy(arr)} if arr.dtype != np.uint8 else arr.tolist(), path)
        else:
            rows = arr.reshape(len(arr), -1) if arr.ndim >= 1 else arr.reshape(1, 1)
            pq.write_table(
                pa.table({"emb": list(rows) if rows.dtype != np.complex64 else [str(r) for r in rows]}), path
            )
    except (TypeError, ValueError, pa.ArrowException):
        return  # a file this combination cannot even be written as
    if cut is not None:
        path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])
    out = d / "S"
    argv = ["import", str(path), "--modality", "image", "--out", str(out), "--json"]
    argv += ["--drop-invalid"] if drop else []
    argv += ["--key", key] if key else []
    if _clean_exit(capfd, main(argv), argv) == 0:
        store = EmbeddingStore(out)
        assert store.check() == [] and len(store) > 0
    else:
        assert not (out / "manifest.json").exists()


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    np.save(d / "e.npy", np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32))
    assert (
        main(
            ["import", str(d / "e.npy"), "--modality", "image", "--out", str(d / "S"), "--shard-rows", "100", "--json"]
        )
        == 0
    )
    return d / "S"


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**20),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@SETTINGS
@given(data=st.data())
def test_mutated_manifest(base_store, tmp_path_factory, capfd, data):
    import shutil

    store = tmp_path_factory.mktemp("m") / "S"
    shutil.copytree(base_store, store)
    m = json.loads((store / "manifest.json").read_text())
    path = data.draw(
        st.sampled_from(
            [
                ("dim",),
                ("dtype",),
                ("shards",),
                ("counts",),
                ("jobs",),
                ("model_id",),
                ("shards", 0, "n_rows"),
                ("shards", 1, "name"),
                ("shards", 2, "row_start"),
                ("counts", "image"),
                ("schema_version",),
                ("next_pair_id",),
            ]
        )
    )
    target = m
    for p in path[:-1]:
        target = target[p]
    if data.draw(st.booleans()):
        target.pop(path[-1], None) if isinstance(target, dict) else None
    else:
        target[path[-1]] = data.draw(_JUNK)
    (store / "manifest.json").write_text(json.dumps(m))
    _reads_cleanly(capfd, store, path)


@SETTINGS
@given(data=st.data())
def test_mutated_metadata(base_store, tmp_path_factory, capfd, data):
    import shutil

    store = tmp_path_factory.mktemp("p") / "S"
    shutil.copytree(base_store, store)
    meta = store / "shards" / "shard-000001.parquet"
    t = pq.read_table(meta)
    how = data.draw(st.sampled_from(["drop", "null", "retype", "rows", "garbage", "truncate"]))
    col = data.draw(st.sampled_from(t.column_names))
    if how == "drop":
        t = t.drop_columns([col])
    elif how == "null":
        t = t.set_column(t.column_names.index(col), col, pa.nulls(t.num_rows, t.schema.field(col).type))
    elif how == "retype":
        t = t.set_column(
            t.column_names.index(col), col, pa.array([data.draw(st.sampled_from(["x", "1", ""]))] * t.num_rows)
        )
    elif how == "rows":
        t = t.slice(0, data.draw(st.integers(0, t.num_rows - 1)))
    if how == "garbage":
        meta.write_bytes(os.urandom(data.draw(st.integers(0, 500))))
    elif how == "truncate":
        meta.write_bytes(meta.read_bytes()[: data.draw(st.integers(0, meta.stat().st_size - 1))])
    else:
        pq.write_table(t, meta)
    _reads_cleanly(capfd, store, (how, col))


_OPTIONS = [
    "arch",
    "dict_size",
    "k",
    "l1_coef",
    "steps",
    "epochs",
    "batch_size",
    "lr",
    "warmup_frac",
    "decay",
    "weight_decay",
    "grad_clip",
    "normalize",
    "aux_k",
    "aux_coef",
    "dead_after",
    "seed",
    "val_fraction",
    "modality",
    "mix",
    "shuffle_buffer",
    "log_every",
    "device",
    "select_dtype",
    "matryoshka_ks",
    "nonsense",
]


@SETTINGS
@given(
    opts=st.dictionaries(st.sampled_from(_OPTIONS), _JUNK, max_size=4), fmt=st.sampled_from(["toml", "json", "yaml"])
)
@example(opts={"arch": ["topk"]}, fmt="toml")  # once a traceback: an architecture looked up by a list
@example(opts={"sparsity": [1]}, fmt="json")
def test_random_config_files(base_store, tmp_path_factory, capfd, opts, fmt):
    d = tmp_path_factory.mktemp("cfg")
    opts = {"steps": 2, "batch_size": 64, "dict_size": 8, "k": 2, "device": "cpu", **opts}
    path = d / f"c.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(opts))
    elif fmt == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(opts))
    else:

        def tv(v):
            if v is None:
                return '""'
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, float) and not np.isfinite(v):
                return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")
            if isinstance(v, dict):
                return "{" + ", ".join(f"{json.dumps(k)} = {tv(x)}" for k, x in v.items()) + "}"
            return json.dumps(v)

        path.write_text("\n".join(f"{k} = {tv(v)}" for k, v in opts.items()) + "\n")
    argv = ["train", str(base_store), "--out", str(d / "sae"), "--config", str(path), "--json"]
    _clean_exit(capfd, main(argv), (opts, fmt))
