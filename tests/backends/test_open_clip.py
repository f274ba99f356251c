"""open_clip backend: the real ViT-B-32 architecture with random weights (`--weights none`), real
COCO photos and scikit-image's bundled pictures. Run by scripts/test.sh in .venv-clip (open_clip
needs torchvision, which does not import beside the CPU torch wheel of .venv)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.open_clip
SKIMAGE = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "horse.png",
    "rocket.jpg",
    "page.png",
    "motorcycle_right.png",
)


@pytest.fixture(scope="module")
def vit_b32():
    from mmsae.backends.registry import load_backend, parse_model

    torch.manual_seed(0)
    return load_backend(parse_model("open_clip:ViT-B-32", "none"))


def _direct(model, preprocess, tokenizer, paths, texts):
    """open_clip called by hand, the way its README does."""
    from PIL import Image

    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]))
        txt = model.encode_text(tokenizer(texts))
    return (torch.nn.functional.normalize(img, dim=-1).numpy(), torch.nn.functional.normalize(txt, dim=-1).numpy())


def test_store_equals_direct_call_and_checkpoint_round_trip(tmp_path, vit_b32, shared_data):
    import open_clip
    import skimage

    from mmsae.data.store import EmbeddingStore

    pics = tmp_path / "pics"
    pics.mkdir()
    for name in SKIMAGE:
        os.symlink(os.path.join(skimage.data_dir, name), pics / name)
    coco = shared_data / "coco-mini" / "images"
    for p in sorted(coco.iterdir())[:24]:
        os.symlink(p, pics / p.name)
    caps = tmp_path / "caps.txt"
    from mmsae.data.inputs import read_inputs

    caps.write_text("\n".join(t.text for t in read_inputs(shared_data / "coco-mini" / "images.csv").texts[:40]))
    # the user's path for local weights: a checkpoint file given with --weights
    ckpt = tmp_path / "vitb32.pt"
    torch.save(vit_b32._model.state_dict(), ckpt)
    for src in (pics, caps):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "mmsae",
                "embed",
                str(src),
                "--model",
                "open_clip:ViT-B-32",
                "--weights",
                str(ckpt),
                "--out",
                str(tmp_path / "store"),
                "--workers",
                "2",
                "--batch-size",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr
    store = EmbeddingStore(tmp_path / "store")
    assert store.manifest.model_id == "open_clip:ViT-B-32/vitb32.pt" and store.dim == 512
    mods = store.modalities()
    meta = store.metadata(["source", "text"]).to_pylist()
    img_rows, txt_rows = np.nonzero(mods == "image")[0], np.nonzero(mods == "text")[0]
    assert len(img_rows) == 32
    paths = [pics / meta[r]["source"] for r in img_rows]
    texts = [meta[r]["text"] for r in txt_rows]
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.load_state_dict(torch.load(ckpt))
    img, txt = _direct(model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32"), paths, texts)
    np.testing.assert_allclose(store.get(img_rows), img, atol=1e-5)
    np.testing.assert_allclose(store.get(txt_rows), txt, atol=1e-5)
    # the in-process backend on the same weights gives the same vectors
    np.testing.assert_allclose(vit_b32.embed_texts(texts[:4]), txt[:4], atol=1e-5)


def test_offline_tag_is_a_fast_one_line_error(tmp_path, shared_data):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmsae",
            "embed",
            str(shared_data / "coco-mini" / "images"),
            "--model",
            "open_clip:ViT-B-32/openai",
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--weights FILE" in lines[0] and "cannot load weights" in lines[0], res.stderr


def test_unknown_architecture(tmp_path):
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.errors import MmsaeError

    with pytest.raises(MmsaeError, match="no architecture 'ViT-Q-99'"):
        load_backend(parse_model("open_clip:ViT-Q-99", "none"))


def test_patch_tokens_equal_open_clips_own_intermediates(tmp_path, vit_b32):
    """`embed --layer -2 --tokens all|patches` on open_clip's ViT-B-32 writes 50 (49) rows a picture,
    equal to the tower's own `forward_intermediates` at that block; a layer out of range is one line."""
    import json

    import open_clip
    from PIL import Image

    from mmsae.data.store import EmbeddingStore
    from tests.backends.conftest import write_pictures

    pictures = write_pictures(tmp_path / "pics", 4, size=64)
    ckpt = tmp_path / "vitb32.pt"
    torch.save(vit_b32._model.state_dict(), ckpt)
    common = ["--model", "open_clip:ViT-B-32", "--weights", str(ckpt), "--workers", "0", "--dtype", "float32"]

    def embed(out, *flags):
        argv = [sys.executable, "-m", "mmsae", "embed", str(tmp_path / "pics"), *common, "--out", str(out), *flags]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.load_state_dict(torch.load(ckpt))
    by_name = {p.name: p for p in pictures}
    for tokens, per in (("all", 50), ("patches", 49)):
        res = embed(tmp_path / tokens, "--layer", "-2", "--tokens", tokens, "--no-normalize", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["rows_written"] == 4 * per
        store = EmbeddingStore(tmp_path / tokens)
        order = [by_name[os.path.basename(s)] for s in store.metadata(["source"]).column("source").to_pylist()[::per]]
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in order])
        with torch.no_grad():
            out = model.visual.eval().forward_intermediates(
                pixels, indices=[10], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
            )
        own = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], 1).numpy()
        want = own if tokens == "all" else own[:, 1:]
        np.testing.assert_allclose(store.all_embeddings(), want.reshape(-1, 768), atol=1e-4)
        extra = store.extras(range(len(store)))
        assert all(e["grid"] == [7, 7] for e in extra) and extra[per - 1]["cell"] == [6, 6]
        pre = store.manifest.preprocessing["tokens"]
        assert pre["layer_index"] == 11 and pre["has_cls"] and store.manifest.model_id.endswith(f"-11/{tokens}")
    res = embed(tmp_path / "bad", "--layer", "13")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "out of range" in res.stderr


def test_a_resnet_tower_is_refused_for_tokens():
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.backends.tokens import TokenBackend, TokenConfig
    from mmsae.errors import MmsaeError

    with pytest.raises(MmsaeError, match="not an open_clip VisionTransformer"):
        TokenBackend(load_backend(parse_model("open_clip:RN50", "none")), TokenConfig(layer=-2))
