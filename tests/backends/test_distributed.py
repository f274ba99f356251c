"""`torchrun --nproc_per_node 2 -m mmsae embed`: two CPU processes (gloo), each embedding its part
into its own shards, rank 0 merging; the store equals a single-process run row for row."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mmsae.data.store import EmbeddingStore
from tests.backends.conftest import write_pictures as _pictures
from tests.backends.conftest import write_table


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path, tiny_clip):
    _pictures(tmp_path / "imgs", 45)
    (tmp_path / "imgs" / "sub1" / "broken.png").write_text("no picture")  # skipped on whichever rank
    rows = [
        {"image_path": f"imgs/sub{i % 3}/im{i:05d}.png", "caption": c}
        for i in range(45)
        for c in (f"a dog {i}", "a cat on a table")
    ]
    rows.append({"image_path": "imgs/sub1/broken.png", "caption": "lost picture"})
    table = write_table(tmp_path / "pairs.jsonl", rows)
    common = [
        str(table),
        "--model",
        f"hf:{tiny_clip}",
        "--batch-size",
        "4",
        "--text-batch-size",
        "16",
        "--shard-rows",
        "10",
        "--workers",
        "1",
        "--json",
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    one = subprocess.run(
        [sys.executable, "-m", "mmsae", "embed", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "mmsae",
            "embed",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = EmbeddingStore(tmp_path / "one"), EmbeddingStore(tmp_path / "two")
    assert a.manifest.counts == b.manifest.counts == {"image": 45, "text": 91}
    assert len(b.shards) > len(a.shards) // 2  # both ranks wrote shards
    cols = ["row_id", "modality", "pair_id", "source", "text"]
    assert a.metadata(cols).to_pylist() == b.metadata(cols).to_pylist()
    np.testing.assert_allclose(a.all_embeddings(), b.all_embeddings(), atol=1e-5)
    import json

    rep_a = json.loads((tmp_path / "one" / "embed-report.json").read_text())
    rep_b = json.loads((tmp_path / "two" / "embed-report.json").read_text())
    (ra,), (rb,) = rep_a.values(), rep_b.values()
    assert rb["world_size"] == 2 and [s["source"] for s in ra["skipped"]] == [s["source"] for s in rb["skipped"]] == [
        "imgs/sub1/broken.png"
    ]
