"""`mmsae embed` from the command line: help, a real run, and one-line errors (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmsae.data.store import EmbeddingStore


def _mmsae(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mmsae", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_layouts_models_and_torchrun():
    res = _mmsae("embed", "--help")
    assert res.returncode == 0
    for word in (
        "COCO",
        "jsonl",
        "open_clip:ARCH",
        "hf:NAME_OR_DIR",
        "minilm",
        "torchrun",
        "--weights",
        "--image-root",
        "--no-normalize",
        "--precision",
        "--workers",
        "embed-report.json",
    ):
        assert word in res.stdout, word


def test_folder_of_real_photos(tmp_path, tiny_clip, shared_data):
    res = _mmsae(
        "embed",
        str(shared_data / "coco-mini" / "images"),
        "--model",
        f"hf:{tiny_clip}",
        "--out",
        str(tmp_path / "s"),
        "--workers",
        "1",
    )
    assert res.returncode == 0, res.stderr
    assert "embedded 51 images and 0 captions" in res.stdout
    assert EmbeddingStore(tmp_path / "s").manifest.counts == {"image": 51}
    again = _mmsae(
        "embed",
        str(shared_data / "coco-mini" / "images"),
        "--model",
        f"hf:{tiny_clip}",
        "--out",
        str(tmp_path / "s"),
        "--workers",
        "1",
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.parametrize(
    "args,match",
    [
        (["nope.json", "--model", "minilm"], "no such file"),
        (["{images}", "--model", "clipper"], "unknown model"),
        (["{images}", "--model", "hf:openai/clip-vit-base-patch32"], "not in the local cache and the model hub cannot"),
        (["{images}", "--model", "hf:./no/such/folder"], "no such folder"),
        (["{images}", "--model", "open_clip:ViT-B-32/openai", "--weights", "laion"], "give them once"),
        (["{images}", "--model", "minilm", "--batch-size", "0"], "must be positive"),
        (["{images}", "--model", "minilm", "--device", "cuda"], "no CUDA device"),
    ],
)
def test_errors_are_one_line(tmp_path, shared_data, args, match):
    args = [a.replace("{images}", str(shared_data / "coco-mini" / "images")) for a in args]
    res = _mmsae("embed", *args, "--out", str(tmp_path / "s"), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], res.stderr
