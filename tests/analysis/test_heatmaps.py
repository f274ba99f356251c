"""Heatmaps of patch-level concepts (`mmsae.analysis.heatmaps`, `mmsae top --heatmaps`): the
overlay on constructed heat, and the whole command on a tiny CLIP's patch tokens, each drawn
picture checked against its own recomputation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmsae.analysis.heatmaps import ALPHA, overlay
from mmsae.cli.main import main
from mmsae.data.store import EmbeddingStore


def test_overlay_paints_the_hot_cell_only():
    picture = Image.new("RGB", (64, 64), (100, 100, 100))
    heat = np.zeros((8, 8))
    heat[2, 5] = 3.0
    out = np.asarray(overlay(picture, heat, vmax=3.0), dtype=int)
    assert out.shape == (64, 64, 3)
    changed = np.abs(out - 100).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    # the hot cell spans pixels 16-24 down and 40-48 across; bilinear upsampling spreads it a cell at most
    assert changed[20, 44] and 8 <= ys.min() and ys.max() < 32 and 32 <= xs.min() and xs.max() < 56
    assert not changed[0, 0] and not changed[63, 63]
    # at the peak the colour map is laid at ALPHA; at half the peak, less of it
    half = np.asarray(overlay(picture, heat, vmax=6.0), dtype=int)
    assert np.abs(half[20, 44] - 100).sum() < np.abs(out[20, 44] - 100).sum()
    assert np.abs(out[20, 44] - 100).max() <= 255 * ALPHA + 1


def test_overlay_draws_over_the_central_square():
    wide = Image.new("RGB", (90, 60), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 15, 60))  # a white strip the centre crop leaves out
    out = overlay(wide, np.zeros((4, 4)), vmax=1.0)
    assert out.size == (60, 60) and np.asarray(out).max() == 0


def test_top_heatmaps_draws_each_concepts_top_pictures(patch_run, capsys):
    from mmsae.analysis.pointing import per_image
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.io import load_sae
    from mmsae.models.paired import as_paired

    t = patch_run
    argv = ["top", str(t / "sae"), str(t / "s"), "--out", str(t / "top"), "--heatmaps", str(t / "h")]
    assert main([*argv, "--heatmap-images", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    listing = json.loads((t / "h" / "heatmaps.json").read_text())
    assert listing["grid"] == [4, 4] and summary["heatmaps"]["concepts"] == len(listing["concepts"]) > 0
    store = EmbeddingStore(t / "s")
    model = load_sae(t / "sae")
    codes = encode_decode(as_paired(model), store.all_embeddings(), "image", "cpu")[0].numpy()
    extras = store.extras(range(len(store)))
    image_R = np.array([e["image"] for e in extras])
    act = per_image(codes, image_R, 24)
    for c, drawn in listing["concepts"].items():
        c = int(c)
        assert 0 < len(drawn) <= 3
        assert [d["image"] for d in drawn] == [int(i) for i in np.argsort(-act[:, c], kind="stable")[: len(drawn)]]
        d = drawn[0]
        assert d["activation"] == pytest.approx(act[d["image"], c], rel=1e-5)
        rows = np.flatnonzero(image_R == d["image"])
        heat = np.zeros((4, 4))
        for r in rows:
            heat[tuple(extras[r]["cell"])] = codes[r, c]
        with Image.open(t / "pics" / d["source"]) as pic:
            expected = np.asarray(overlay(pic, heat, d["activation"]), dtype=int)
        drawn_png = np.asarray(Image.open(t / "h" / d["file"]), dtype=int)
        assert drawn_png.shape == expected.shape and np.abs(drawn_png - expected).max() <= 1
    # one concept asked for, fewer pictures
    assert main([*argv, "--heatmap-concepts", "3", "--heatmap-images", "2", "--json"]) == 0
    capsys.readouterr()
    assert list(json.loads((t / "h" / "heatmaps.json").read_text())["concepts"]) == ["3"]


def test_heatmaps_refuse_what_they_cannot_draw(patch_run, tiny_clip, capsys):
    t = patch_run
    argv = ["top", str(t / "sae"), str(t / "s"), "--out", str(t / "top"), "--heatmaps", str(t / "h")]
    assert main([*argv, "--heatmap-concepts", "1,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    (t / "top").mkdir()
    assert main([*argv, "--heatmap-concepts", "99"]) == 2
    assert "must lie in 0..15" in capsys.readouterr().err and not any((t / "top").iterdir())  # before any work
    assert main(["embed", str(t / "pics"), "--model", f"hf:{tiny_clip}", "--out", str(t / "pooled"),
                 "--workers", "0", "--json"]) == 0  # fmt: skip
    assert main(["train", str(t / "pooled"), "--arch", "topk", "--dict-size", "8", "--k", "2", "--epochs", "1",
                 "--out", str(t / "psae")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["top", str(t / "psae"), str(t / "pooled"), "--out", str(t / "t2"), "--heatmaps", str(t / "h2")]) == 2
    err = capsys.readouterr().err
    assert "pooled embeddings: heatmaps need patch tokens" in err and not (t / "t2").exists()
    assert main(["top", str(t / "psae"), str(t / "pooled"), "--out", str(t / "t3"), "--per-image", "mean"]) == 2
    assert "needs a store of patch tokens" in capsys.readouterr().err and not (t / "t3").exists()
    assert main(["eval", str(t / "psae"), str(t / "pooled"), "--per-image", "max"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "needs a store of patch tokens" in err
    assert main(["eval", str(t / "psae"), str(t / "pooled"), "--json"]) == 0  # no per-picture section, no error
    assert "per_image" not in json.loads(capsys.readouterr().out)


def test_class_tokens_do_not_rank_and_sampled_stores_are_refused(patch_run, tiny_clip, capsys):
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.io import load_sae
    from mmsae.models.paired import as_paired

    t = patch_run
    base = ["embed", str(t / "pics"), "--model", f"hf:{tiny_clip}", "--workers", "0", "--json"]
    assert main([*base, "--out", str(t / "all"), "--tokens", "all"]) == 0
    assert main([*base, "--out", str(t / "few"), "--tokens", "all", "--patches-per-image", "3"]) == 0
    capsys.readouterr()
    # the patch SAE reads the class-token store too (same width): rank by the patches alone
    argv = ["top", str(t / "sae"), str(t / "all"), "--out", str(t / "top"), "--heatmaps", str(t / "h")]
    assert main([*argv, "--heatmap-images", "1", "--json"]) == 0
    capsys.readouterr()
    listing = json.loads((t / "h" / "heatmaps.json").read_text())["concepts"]
    store = EmbeddingStore(t / "all")
    extras = store.extras(range(len(store)))
    codes = encode_decode(as_paired(load_sae(t / "sae")), store.all_embeddings(), "image", "cpu")[0].numpy()
    for c, drawn in listing.items():
        d = drawn[0]
        patches = [r for r, e in enumerate(extras) if e["image"] == d["image"] and "cell" in e]
        assert len(patches) == 16 and d["activation"] == pytest.approx(codes[patches, int(c)].max(), rel=1e-5)
    assert main(["top", str(t / "sae"), str(t / "few"), "--out", str(t / "t3"), "--heatmaps", str(t / "h3")]) == 2
    assert "sampled patches" in capsys.readouterr().err
    assert main(["top", str(t / "sae"), str(t / "all"), "--out", str(t / "t4"), "--heatmap-concepts", "1"]) == 2
    assert "pass --heatmaps too" in capsys.readouterr().err
    assert main([*argv, "--heatmap-concepts", ","]) == 2
    assert "names no concept" in capsys.readouterr().err


def test_top_lists_each_picture_once_on_a_patch_store(patch_run, capsys):
    """`mmsae top` on patch tokens ranks pictures by their best patch (the default, --per-image
    max) or by their mean; --per-image row ranks token rows; a pooled store refuses max/mean."""
    import pyarrow.parquet as pq

    from mmsae.analysis.pointing import per_image
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.io import load_sae
    from mmsae.models.paired import as_paired

    t = patch_run
    store = EmbeddingStore(t / "s")
    codes = encode_decode(as_paired(load_sae(t / "sae")), store.all_embeddings(), "image", "cpu")[0].numpy()
    image_R = np.array([e["image"] for e in store.extras(range(len(store)))])
    for how in (None, "mean", "row"):
        flag = [] if how is None else ["--per-image", how]
        assert (
            main(["top", str(t / "sae"), str(t / "s"), "--out", str(t / f"top-{how}"), "-k", "4", *flag, "--json"]) == 0
        )
        summary = json.loads(capsys.readouterr().out)
        table = pq.read_table(t / f"top-{how}" / "top_examples.parquet").to_pandas()
        for c, rows in table.groupby("concept"):
            rows = rows.sort_values("rank")
            pictures = image_R[rows["row_id"].to_numpy()]
            if how == "row":
                col = codes[:, c]
                want = np.argsort(-col, kind="stable")[: len(rows)]
                np.testing.assert_array_equal(rows["row_id"].to_numpy(), want)
                continue
            assert summary["per_image"] == (how or "max") and len(set(pictures)) == len(pictures)
            act = per_image(codes, image_R, 24, how or "max")[:, c]
            np.testing.assert_array_equal(pictures, np.argsort(-act, kind="stable")[: len(rows)])
            np.testing.assert_allclose(rows["activation"].to_numpy(), act[pictures], rtol=1e-5)
            if how is None:  # the row is the patch where the concept peaks
                np.testing.assert_allclose(codes[rows["row_id"].to_numpy(), c], act[pictures], rtol=1e-5)


def test_eval_counts_sparsity_per_picture(patch_run, capsys):
    """`mmsae eval` on patch tokens adds a per-picture section (max by default, --per-image mean,
    row leaves it out; also on a split), equal to the pooled codes counted directly."""
    from mmsae.analysis.pointing import per_image
    from mmsae.data.stream import split_mask
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.io import load_sae
    from mmsae.models.paired import as_paired

    t = patch_run
    store = EmbeddingStore(t / "s")
    codes = encode_decode(as_paired(load_sae(t / "sae")), store.all_embeddings(), "image", "cpu")[0].numpy()
    image_R = np.array([e["image"] for e in store.extras(range(len(store)))])
    val = split_mask(store.pair_ids(), np.arange(len(store)), "val", 0.3)
    for how, split in [(None, "all"), ("mean", "all"), ("max", "val")]:
        flag = [] if how is None else ["--per-image", how]
        argv = ["eval", str(t / "sae"), str(t / "s"), "--split", split, "--val-fraction", "0.3", *flag, "--json"]
        assert main(argv) == 0
        got = json.loads(capsys.readouterr().out)["per_image"]
        keep = np.unique(image_R[val]) if split == "val" else np.arange(24)
        assert 0 < len(keep) < 24 or split == "all"
        pooled = per_image(codes, image_R, 24, how or "max")[keep]
        fired = pooled > 0
        assert got["how"] == (how or "max") and got["pictures"] == len(keep)
        assert got["l0"] == pytest.approx(fired.sum() / len(keep))
        assert got["dead_fraction"] == pytest.approx((~fired.any(0)).mean())
        assert got["dense_fraction"] == pytest.approx((fired.mean(0) > 0.1).mean())
        assert got["mean_activation"] == pytest.approx(pooled[fired].mean(), rel=1e-5)
    assert main(["eval", str(t / "sae"), str(t / "s"), "--per-image", "row", "--json"]) == 0
    assert "per_image" not in json.loads(capsys.readouterr().out)


def test_overlay_without_crop_lays_the_grid_over_the_whole_picture():
    """SigLIP-style processors resize the whole picture: a 2×8 grid's top-right cell lands on the
    picture's top-right corner."""
    wide = Image.new("RGB", (80, 20), (100, 100, 100))
    heat = np.zeros((2, 8))
    heat[0, 7] = 1.0
    out = np.asarray(overlay(wide, heat, vmax=1.0, crop=False), dtype=int)
    assert out.shape == (20, 80, 3)
    changed = np.abs(out - 100).sum(-1) > 0
    assert changed[2, 77] and not changed[18, 2] and not changed[2, 2]
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 60 and ys.min() == 0


def test_top_heatmaps_on_siglip2s_own_grids(siglip2_patch_run, capsys):
    """A store of SigLIP2 patch tokens (a grid per picture): `top --heatmaps` draws each picture
    whole, its own grid laid over it, as the picture's rows recomputed give it."""
    from mmsae.analysis.heatmaps import heat_grid
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.io import load_sae
    from mmsae.models.paired import as_paired

    tmp_path = siglip2_patch_run
    pics = tmp_path / "pics"
    argv = ["top", str(tmp_path / "sae"), str(tmp_path / "s"), "--out", str(tmp_path / "t")]
    assert main([*argv, "--heatmaps", str(tmp_path / "h"), "--heatmap-images", "3", "--json"]) == 0
    capsys.readouterr()
    listing = json.loads((tmp_path / "h" / "heatmaps.json").read_text())
    assert listing["grid"] is None and listing["concepts"]
    store = EmbeddingStore(tmp_path / "s")
    extras = store.extras(range(len(store)))
    codes = encode_decode(as_paired(load_sae(tmp_path / "sae")), store.all_embeddings(), "image", "cpu")[0].numpy()
    checked = 0
    for c, drawn in listing["concepts"].items():
        for d in drawn:
            rows = [r for r, e in enumerate(extras) if e["image"] == d["image"]]
            assert d["grid"] == extras[rows[0]]["grid"]
            heat = heat_grid(codes[rows, int(c)], np.array([extras[r]["cell"] for r in rows]), d["grid"])
            with Image.open(pics / d["source"]) as pic:
                want = np.asarray(overlay(pic, heat, d["activation"], crop=False), dtype=int)
                assert want.shape[:2] == (pic.size[1], pic.size[0])  # the whole picture, not a square
            got = np.asarray(Image.open(tmp_path / "h" / d["file"]), dtype=int)
            assert got.shape == want.shape and np.abs(got - want).max() <= 1
            checked += 1
    assert checked > 0


def test_a_picture_damaged_since_embedding_is_skipped_and_listed(patch_run, capsys):
    """`top --heatmaps` draws the other pictures and lists the damaged one in heatmaps.json; the
    explorer answers its heatmap with a 404's message, not a server error."""
    import pytest

    from mmsae.explorer.app import Explorer
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    t = patch_run
    argv = ["top", str(t / "sae"), str(t / "s"), "--out", str(t / "top"), "--heatmaps", str(t / "h"), "--json"]
    assert main([*argv, "--heatmap-images", "24"]) == 0
    capsys.readouterr()
    first = json.loads((t / "h" / "heatmaps.json").read_text())
    victim = next(iter(first["concepts"].values()))[0]["source"]
    (t / "pics" / victim).write_bytes(b"not a picture")
    assert main([*argv, "--heatmap-images", "24"]) == 0
    summary = json.loads(capsys.readouterr().out)["heatmaps"]
    listing = json.loads((t / "h" / "heatmaps.json").read_text())
    assert summary["unreadable"] == 1 and [u["source"] for u in listing["unreadable"]] == [victim]
    drawn = [d["source"] for v in listing["concepts"].values() for d in v]
    assert victim not in drawn and len(drawn) == sum(len(v) for v in first["concepts"].values()) - sum(
        d["source"] == victim for v in first["concepts"].values() for d in v
    )
    ex = Explorer(load_explorer(find_run(t / "sae")))
    store = EmbeddingStore(t / "s")
    row = store.labels(range(len(store))).index(victim)
    with pytest.raises(KeyError, match="cannot be read"):
        ex.heatmap_png(0, row)
