"""Real transformers architectures with random weights, built from config objects (no download)
and saved with `save_pretrained`, so the backend loads them through the path a user's local
weights take. The tokenizer is a small word-level one built with `tokenizers`; the image
processors are the architectures' own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = (
    "a an the of on in with and to at is are two man woman people person dog cat horse bus train "
    "plane table kitchen street living room sitting standing red white black blue large small food "
    "pizza beach water teddy bear cup coffee"
).split()
TINY_TEXT = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=24,
)
TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)


def _tokenizer():
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", model_max_length=24
    )


def build_tiny(kind: str, folder: Path) -> Path:
    """A randomly initialised CLIP / SigLIP / SigLIP2 / AIMv2 saved to `folder`."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    if kind == "clip":
        model = T.CLIPModel(T.CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24))
        proc = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif kind == "siglip":
        model = T.SiglipModel(T.SiglipConfig(text_config=TINY_TEXT, vision_config=TINY_VISION))
        proc = T.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif kind == "siglip2":
        model = T.Siglip2Model(T.Siglip2Config(text_config=TINY_TEXT, vision_config=dict(TINY_VISION, num_patches=16)))
        proc = T.Siglip2ImageProcessor(max_num_patches=16, patch_size=8)
    elif kind == "aimv2":
        model = T.Aimv2Model(T.Aimv2Config(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=24))
        proc = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        raise ValueError(kind)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def coco_mini(shared_data) -> Path:
    return shared_data / "coco-mini"


def write_table(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import csv

        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def write_pictures(folder: Path, n: int, seed: int = 0, size: int = 40) -> list[Path]:
    """n random PNGs in three subfolders of `folder` (an image-folder input for `mmsae embed`)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"sub{i % 3}" / f"im{i:05d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out
