"""The pointing game on the scene world: does a patch-level SAE concept fire on the right object?

    python benchmarks/pointing_game.py [--scenes 3000] [--layer -1] [--dict-size 1024] [--k 16]
                                       [--epochs 10] [--top 50] [--json]

Scenes of seed 1 (new to the shipped CLIP, trained on seed 0) are drawn, their patch tokens at
`--layer` written to a store by `mmsae embed --layer --tokens patches`'s own code (the shipped
world CLIP: a 64-pixel ViT with 8×8 patches), and a TopK SAE trained on those rows. A picture's
activation of a concept is the max over its patches (`mmsae.analysis.pointing.per_image`). For
every latent that detects a shape or colour value at picture level (AUROC ≥ 0.9 against the
scenes showing it), the pointing game is played on its `--top` most activating pictures: a hit
when its peak patch overlaps the bounding box of an object with that value
(the world's recorded boxes, `mmsae.world.object_boxes`), against the hit rate of a uniformly random patch. Prints one row
per attribute and one per latent; the measured table is in docs/analyses.md.

The same latents are also named from the world's words and distractors (`mmsae.world.vocabulary`)
by `mmsae name --method pictures` (`naming.name_by_pictures`: the term whose cosine with the same
scenes' pooled embeddings best follows the latent's per-picture activation), and each name is
scored against the value the latent detects; chance is one over the vocabulary's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmsae.analysis.pointing import per_image, pointing_game
from mmsae.analysis.world_truth import auroc_matrix
from mmsae.backends.embed import EmbedConfig, embed
from mmsae.backends.registry import load_backend, parse_model
from mmsae.backends.tokens import TokenConfig
from mmsae.data.inputs import read_inputs
from mmsae.data.store import EmbeddingStore
from mmsae.metrics.crossmodal import encode_decode
from mmsae.models.io import load_sae
from mmsae.models.paired import as_paired
from mmsae.pipelines.demo_world import PRETRAINED
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer
from mmsae.world import METADATA_FILE, attribute_values, image_matrix, write_world

ATTRIBUTES = ("shape", "colour")
DETECTS = 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=3000)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--dict-size", type=int, default=1024)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--model", default=str(PRETRAINED))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = write_world(tmp / "world", args.scenes, seed=1, captions_per_scene=1, progress=False)
        backend = load_backend(parse_model(f"hf:{args.model}"))
        cfg = EmbedConfig(tokens=TokenConfig(layer=args.layer, tokens="patches"), num_workers=0, progress=False)
        embed(read_inputs(str(tmp / "world" / METADATA_FILE)), backend, tmp / "store", cfg)
        store = EmbeddingStore(tmp / "store")
        pre = store.manifest.preprocessing["tokens"]
        grid = tuple(pre["grid"])
        n_patch = grid[0] * grid[1]
        log(f"{len(store):,} patch rows ({n_patch} per picture, {store.dim}-d) in {time.perf_counter() - t0:.0f} s")

        train = TrainConfig(
            arch="topk",
            dict_size=args.dict_size,
            k=args.k,
            epochs=args.epochs,
            batch_size=4096,
            lr=1e-3,
            device="cpu",
            checkpoint_every=0,
        )
        res = Trainer(store, tmp / "sae", train, progress=not args.json).run()
        sae = as_paired(load_sae(res.out_dir))
        log(f"SAE: held-out FVU {res.val_metrics['fvu']:.3f}, dead {res.val_metrics['dead_fraction']:.2f}")

        extras = store.extras(np.arange(len(store)))
        image_R = np.array([e["image"] for e in extras])
        token_R = np.array([e["token"] for e in extras])
        codes_RF = encode_decode(sae, store.all_embeddings(), "image", "cpu")[0].numpy()
        n = len(world.scenes)
        act_NF = per_image(codes_RF, image_R, n, "max")

        values = [v for v in attribute_values() if v.attribute in ATTRIBUTES]
        shows_NC = image_matrix(list(world.scenes), values)
        auc_CF = auroc_matrix(act_NF, shows_NC)
        # heat[i, p]: each latent's code on patch p of picture i (patch positions 1..h·w after the class token)
        first = 1 if pre["has_cls"] else 0
        order = np.lexsort((token_R, image_R))
        heat_NPF = codes_RF[order].reshape(n, n_patch, -1)
        assert (token_R[order].reshape(n, n_patch) == np.arange(first, first + n_patch)).all()

        rows = []
        for c, v in enumerate(values):
            for f in np.flatnonzero(auc_CF[c] >= DETECTS):
                top = np.argsort(-act_NF[:, f], kind="stable")[: args.top]
                top = top[act_NF[top, f] > 0]
                targets = [
                    [
                        box
                        for o, box in zip(world.scenes[i].objects, world.boxes[i])
                        if getattr(o, v.attribute) == v.value
                    ]
                    for i in top
                ]
                game = pointing_game(heat_NPF[top, :, f], targets, grid, world.config.image_size)
                on_value = float(np.mean([bool(t) for t in targets])) if len(targets) else float("nan")
                rows.append(
                    {"value": v.key, "latent": int(f), "auroc": float(auc_CF[c, f]), "top_show_value": on_value, **game}
                )
        # naming from pictures: the same scenes' pooled embeddings, the world's words and distractors
        from mmsae.analysis.naming import embed_vocabulary, name_by_pictures
        from mmsae.world import vocabulary

        pooled_cfg = EmbedConfig(num_workers=0, progress=False, modalities=("image",))
        embed(read_inputs(str(tmp / "world" / METADATA_FILE)), backend, tmp / "pooled", pooled_cfg)
        pooled = EmbeddingStore(tmp / "pooled")
        sources = pooled.metadata(["source"]).column("source").to_pylist()
        patch_sources = store.metadata(["source"]).column("source").to_pylist()
        row_of = {s_: r for r, s_ in enumerate(sources)}
        pooled_N = pooled.get([row_of[patch_sources[int(np.flatnonzero(image_R == i)[0])]] for i in range(n)])
        terms = vocabulary()
        E = embed_vocabulary(pooled, terms, encoder=backend)
        names = [nm.name for nm in name_by_pictures(act_NF, pooled_N, E, terms)]
        word_of = {v.key: v.word for v in values}
        for r in rows:
            r["name"] = names[r["latent"]]
            r["named_right"] = r["name"] == word_of[r["value"]]
        by_attr = {}
        for a in ATTRIBUTES:
            mine = [r for r in rows if r["value"].startswith(a + "=")]
            by_attr[a] = {
                "values": sum(v.attribute == a for v in values),
                "values_with_a_latent": len({r["value"] for r in mine}),
                "latents": len(mine),
                "hit_rate": float(np.mean([r["hit_rate"] for r in mine])) if mine else float("nan"),
                "random_patch": float(np.mean([r["random_patch"] for r in mine])) if mine else float("nan"),
                "latents_at_80": sum(r["hit_rate"] >= 0.8 for r in mine),
                "named_right": float(np.mean([r["named_right"] for r in mine])) if mine else float("nan"),
            }
    out = {
        "config": vars(args),
        "rows": len(store),
        "per_image": n_patch,
        "grid": list(grid),
        "fvu": res.val_metrics["fvu"],
        "by_attribute": by_attr,
        "vocabulary": len(terms),
        "latents": rows,
        "seconds": time.perf_counter() - t0,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"pointing game, {args.scenes} scenes of seed 1, layer {args.layer}, TopK F={args.dict_size} k={args.k}, top {args.top}"
    )
    print(
        f"{'attribute':<10}{'values':>8}{'detected':>10}{'latents':>9}{'hit rate':>10}{'random':>8}{'≥ 0.8':>7}"
        f"{'named right':>13}"
    )
    for a, b in by_attr.items():
        print(
            f"{a:<10}{b['values']:>8}{b['values_with_a_latent']:>10}{b['latents']:>9}{b['hit_rate']:>10.3f}"
            f"{b['random_patch']:>8.3f}{b['latents_at_80']:>7}{b['named_right']:>13.3f}"
        )
    print(f"naming from pictures: {out['vocabulary']} terms (chance {1 / out['vocabulary']:.3f})")
    for r in rows:
        print(
            f"  {r['value']:<18} latent {r['latent']:>5}  AUROC {r['auroc']:.3f}  hit {r['hit_rate']:.2f}  "
            f"random {r['random_patch']:.2f}  name {r['name']}"
        )
    print(f"{out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
