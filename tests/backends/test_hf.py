"""transformers backend: CLIP, SigLIP, SigLIP2 and AIMv2 with random weights, loaded from a local
folder like a user's weights, on real COCO photos and captions. What lands in the store must
equal a direct call of the model on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsae.backends.embed import EmbedConfig, embed
from mmsae.backends.registry import load_backend, parse_model, text_encoder_for
from mmsae.data.inputs import read_inputs
from mmsae.data.store import EmbeddingStore
from tests.backends.conftest import build_tiny

transformers = pytest.importorskip("transformers", reason="install the [dev] extra")


def _direct_images(folder, paths, kind):
    """The model called by hand: its own processor on PIL images, get_image_features, L2 norm."""
    from PIL import Image

    model = transformers.AutoModel.from_pretrained(folder).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    ims = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        out = model.get_image_features(**proc(images=ims, return_tensors="pt"))
    out = out if torch.is_tensor(out) else out.pooler_output
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def _direct_texts(folder, texts, kind):
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    siglip = kind in ("siglip", "siglip2")  # trained on max_length padding (the HF model cards)
    enc = tok(texts, padding="max_length" if siglip else True, truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**{k: v for k, v in enc.items() if k in tok.model_input_names})
    out = out if torch.is_tensor(out) else out.pooler_output
    return torch.nn.functional.normalize(out, dim=-1).numpy()


@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2", "aimv2"])
def test_store_equals_direct_call(kind, tmp_path, coco_mini):
    folder = build_tiny(kind, tmp_path / kind)
    backend = load_backend(parse_model(f"hf:{folder}"))
    # coco-mini's images.csv: file_name + ' || '-joined captions; 108 of its 159 photos are not
    # shipped (licences), so they are skipped and listed, never fatal
    inputs = read_inputs(coco_mini / "images.csv", image_root=coco_mini / "images")
    # one text batch: transformers' AIMv2 text tower (random tiny config) gives padding-dependent
    # embeddings, so the direct call must see the same padding; CLIP and SigLIP do not care
    rep = embed(
        inputs,
        backend,
        tmp_path / "store",
        EmbedConfig(batch_size=16, text_batch_size=1000, num_workers=2, shard_rows=100, progress=False),
    )
    store = EmbeddingStore(tmp_path / "store")
    assert store.manifest.model_id == f"hf:{folder}" and store.manifest.preprocessing["l2_normalized"] is True
    assert rep.images_in == 159 and rep.images_skipped == 159 - 51 and store.manifest.counts["image"] == 51
    assert {s["reason"] for s in rep.skipped} == {"missing file"}
    mods = store.modalities()
    img_rows = np.nonzero(mods == "image")[0]
    sources = store.metadata(["source"]).column("source").to_pylist()
    paths = [coco_mini / "images" / sources[r] for r in img_rows]
    np.testing.assert_allclose(store.get(img_rows), _direct_images(folder, paths, kind), atol=2e-5)
    txt_rows = np.nonzero(mods == "text")[0]
    texts = store.metadata(["text"]).column("text").to_pylist()
    assert len(txt_rows) == 159 * 5
    direct = _direct_texts(folder, [texts[r] for r in txt_rows], kind)
    np.testing.assert_allclose(store.get(txt_rows), direct, atol=2e-5)
    # every caption keeps its photo's pair id
    pids = store.pair_ids()
    assert len(store.pairs()[0]) == 51 * 5
    assert set(pids[img_rows]) <= set(pids[txt_rows])
    # naming and search embed words with the same backend, rebuilt from the manifest
    enc = text_encoder_for(store)
    again = enc.embed_texts([texts[r] for r in txt_rows], batch_size=1000)
    np.testing.assert_allclose(again, store.get(txt_rows), atol=2e-5)


def test_missing_local_folder_file_is_one_line(tmp_path, tiny_clip):
    import shutil

    from mmsae.errors import MmsaeError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_clip, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(MmsaeError, match="cannot load weights for hf:.*broken"):
        load_backend(parse_model(f"hf:{broken}"))
