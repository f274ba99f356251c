"""The extraction pipeline: skipped images, duplicates, options in the manifest, appending,
worker equivalence, and resuming after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmsae.backends.embed import REPORT_NAME, EmbedConfig, embed
from mmsae.backends.registry import load_backend, parse_model
from mmsae.data.inputs import read_inputs
from mmsae.data.store import EmbeddingStore
from mmsae.errors import MmsaeError
from tests.backends.conftest import write_pictures as _pictures
from tests.backends.conftest import write_table

QUIET = EmbedConfig(batch_size=8, num_workers=0, shard_rows=16, progress=False)


@pytest.fixture(scope="module")
def clip(tiny_clip):
    return load_backend(parse_model(f"hf:{tiny_clip}"))


def _rows(root) -> tuple[np.ndarray, list]:
    store = EmbeddingStore(root)
    meta = store.metadata(["modality", "pair_id", "source", "text"]).to_pylist()
    return store.all_embeddings(), meta


def test_unreadable_images_are_skipped_and_listed(tmp_path, clip):
    good = _pictures(tmp_path / "imgs", 10)
    (tmp_path / "imgs" / "fake.png").write_text("not a picture")
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    data = good[0].read_bytes()
    (tmp_path / "imgs" / "truncated.png").write_bytes(data[: len(data) // 3])
    rep = embed(read_inputs(tmp_path / "imgs"), clip, tmp_path / "store", QUIET)
    assert rep.images_in == 13 and rep.images_skipped == 3 and rep.counts == {"image": 10}
    listed = json.loads((tmp_path / "store" / REPORT_NAME).read_text())
    (entry,) = listed.values()
    assert sorted(Path(s["path"]).name for s in entry["skipped"]) == ["empty.jpg", "fake.png", "truncated.png"]
    assert all(s["reason"] for s in entry["skipped"])
    emb, meta = _rows(tmp_path / "store")
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # sources are relative to the recorded image root, so the explorer can serve them
    store = EmbeddingStore(tmp_path / "store")
    root = Path(store.manifest.preprocessing["image_root"])
    assert all((root / m["source"]).is_file() for m in meta)
    assert sorted(m["pair_id"] for m in meta) == sorted({m["pair_id"] for m in meta})


def test_rows_equal_the_direct_call_and_do_not_depend_on_workers(tmp_path, clip):
    from PIL import Image

    paths = _pictures(tmp_path / "imgs", 24)
    inputs = read_inputs(tmp_path / "imgs")
    embed(inputs, clip, tmp_path / "w0", QUIET)
    embed(inputs, clip, tmp_path / "w2", EmbedConfig(batch_size=5, num_workers=2, shard_rows=7, progress=False))
    a, meta_a = _rows(tmp_path / "w0")
    b, meta_b = _rows(tmp_path / "w2")
    assert meta_a == meta_b
    np.testing.assert_allclose(a, b, atol=1e-6)
    order = [str(tmp_path / "imgs" / m["source"]) for m in meta_a]
    assert sorted(order) == sorted(map(str, paths))
    direct = clip.embed_images([Image.open(p).convert("RGB") for p in order])
    np.testing.assert_allclose(a, direct, atol=1e-6)


def test_captions_pairs_duplicates_and_normalisation(tmp_path, clip):
    _pictures(tmp_path / "imgs", 3)
    rows = [
        {"image_path": "imgs/sub0/im00000.png", "caption": "a dog on a table"},
        {"image_path": "imgs/sub0/im00000.png", "caption": "a dog on a table"},  # repeat: one row
        {"image_path": "imgs/sub1/im00001.png", "caption": "a dog on a table"},  # same text, other image
        {"image_path": "imgs/sub2/im00002.png", "caption": "two cats"},
    ]
    table = write_table(tmp_path / "pairs.csv", rows)
    rep = embed(
        read_inputs(table), clip, tmp_path / "store", EmbedConfig(num_workers=0, normalize=False, progress=False)
    )
    assert rep.duplicate_texts == 1 and rep.counts == {"image": 3, "text": 3}
    store = EmbeddingStore(tmp_path / "store")
    assert store.manifest.preprocessing["l2_normalized"] is False
    emb, meta = _rows(tmp_path / "store")
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1)
    texts = [i for i, m in enumerate(meta) if m["modality"] == "text"]
    assert [meta[i]["pair_id"] for i in texts] == [0, 1, 2]
    np.testing.assert_array_equal(emb[texts[0]], emb[texts[1]])  # identical caption, embedded once
    img, txt = store.pairs()
    assert len(img) == 3 and all(meta[i]["pair_id"] == meta[j]["pair_id"] for i, j in zip(img, txt))


def test_rerun_does_nothing_and_mismatched_appends_are_refused(tmp_path, clip, tiny_clip):
    _pictures(tmp_path / "imgs", 6)
    inputs = read_inputs(tmp_path / "imgs")
    embed(inputs, clip, tmp_path / "store", QUIET, source=str(tmp_path / "imgs"))
    before = (tmp_path / "store" / "manifest.json").read_text()
    rep = embed(inputs, clip, tmp_path / "store", QUIET, source=str(tmp_path / "imgs"))
    assert rep.already_done and (tmp_path / "store" / "manifest.json").read_text() == before
    # captions appended to the same store, same model: fine
    caps = tmp_path / "caps.txt"
    caps.write_text("a dog\n\na cat\na dog\n")
    rep = embed(read_inputs(caps), clip, tmp_path / "store", QUIET, source=str(caps))
    assert rep.counts == {"image": 6, "text": 2} and rep.duplicate_texts == 1
    with pytest.raises(MmsaeError, match="l2_normalized"):
        embed(read_inputs(caps), clip, tmp_path / "store", EmbedConfig(normalize=False, progress=False))
    from tests.backends.conftest import build_tiny

    other = load_backend(parse_model(f"hf:{build_tiny('siglip', tmp_path / 'siglip')}"))
    with pytest.raises(MmsaeError, match="new store"):
        embed(read_inputs(caps), other, tmp_path / "store", QUIET)


def _run_embed(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "mmsae", "embed", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def _part_done(out: Path) -> int:
    done = 0
    for m in out.glob(".embed-staging/*/rank-*/manifest.json"):
        try:
            done += json.loads(m.read_text()).get("jobs", {}).get("part", 0)
        except (json.JSONDecodeError, OSError):
            pass
    return done


def kill_and_resume(args: list[str], tmp_path: Path, after: int = 200) -> tuple[int, dict]:
    """`mmsae embed ARGS` into TMP/ref uninterrupted, then into TMP/store killed with SIGKILL once
    `after` items are committed, then again to finish: (items done at the kill, the last run's report)."""
    ref = _run_embed([*args, "--out", str(tmp_path / "ref")])
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    proc = _run_embed([*args, "--out", str(tmp_path / "store")])
    deadline = time.time() + 120
    while _part_done(tmp_path / "store") < after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make the input larger"
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up of any kind: workers die too
    proc.wait()
    done_at_kill = _part_done(tmp_path / "store")
    again = _run_embed([*args, "--out", str(tmp_path / "store")])
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    return done_at_kill, json.loads(out)


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, tiny_clip):
    _pictures(tmp_path / "imgs", 2400, size=24)
    caps = tmp_path / "caps.csv"
    write_table(
        caps,
        [{"image_path": f"imgs/sub{i % 3}/im{i:05d}.png", "caption": f"a dog number {i}"} for i in range(0, 2400, 7)],
    )
    args = [
        str(caps),
        "--model",
        f"hf:{tiny_clip}",
        "--batch-size",
        "16",
        "--shard-rows",
        "64",
        "--workers",
        "1",
        "--json",
    ]
    done_at_kill, rep = kill_and_resume(args, tmp_path)
    assert 0 < done_at_kill < 2400 + 343
    assert rep["resumed_items"] >= done_at_kill >= 200
    a, meta_a = _rows(tmp_path / "ref")
    b, meta_b = _rows(tmp_path / "store")
    assert meta_a == meta_b  # no duplicate, no missing row, same order
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not (tmp_path / "store" / ".embed-staging").exists()
