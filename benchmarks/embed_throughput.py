"""Extraction throughput: `mmsae embed`'s pipeline against a bare loop over the same model and inputs.

The bare loop is what a user would write by hand: open each image, preprocess it, stack a
batch, call the model, normalise; captions tokenised and encoded in batches. The pipeline is
`mmsae.backends.embed.embed` writing a real store (DataLoader workers, resumable commits,
deduplication, metadata). Both run in this process, interleaved, median of --repeats.

Default model: the real CLIP ViT-B/32 architecture (transformers `CLIPConfig()` defaults) with
random weights, so it runs offline; `--model open_clip:ViT-B-32 --weights none` in .venv-clip
measures open_clip. Images: the COCO photos of $MMSAE_SHARED_DATA/coco-mini, cycled to --images
files; captions: the first --texts COCO val captions.

    python benchmarks/embed_throughput.py [--images 256] [--texts 2000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(os.environ.get("MMSAE_SHARED_DATA", "shared-data"))  # the real data folder (see .ci/run)


def build_clip_b32(folder: Path) -> str:
    import transformers as T

    torch.manual_seed(0)
    T.CLIPModel(T.CLIPConfig()).save_pretrained(folder)
    T.CLIPImageProcessor().save_pretrained(folder)  # 224 px, CLIP's mean/std, bicubic resize + centre crop
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    caps = json.loads((SHARED / "coco-val2017-captions/captions_val2017.json").read_text())["annotations"]
    words = sorted({w for a in caps[:20000] for w in a["caption"].lower().split()})[:49000]
    tok = Tokenizer(
        models.WordLevel({"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}, unk_token="[UNK]")
    )
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    T.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", model_max_length=77
    ).save_pretrained(folder)
    return f"hf:{folder}"


def bare_images(backend, paths, batch_size) -> float:
    from PIL import Image
    from torch.utils.data import default_collate

    tf = backend.image_transform()
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(paths), batch_size):
        pixels = default_collate([tf(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]])
        out.append(torch.nn.functional.normalize(backend.encode_images(pixels).float(), dim=-1).numpy())
    return len(paths) / (time.perf_counter() - t0)


def bare_texts(backend, texts, batch_size) -> float:
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(texts), batch_size):
        emb = backend.encode_texts(backend.tokenize(texts[i : i + batch_size]))
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1).numpy())
    return len(texts) / (time.perf_counter() - t0)


def pipeline(backend, inputs, cfg, work: Path) -> float:
    from mmsae.backends.embed import embed

    out = work / "store"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    embed(inputs, backend, out, cfg)
    n = len(inputs.images) + len(inputs.texts)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="backend (default: random-weight CLIP ViT-B/32 via transformers)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--text-batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=-1, help="pipeline DataLoader workers (default: the pipeline's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from mmsae.backends.embed import EmbedConfig, _num_workers
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.data.inputs import EmbedInputs, TextItem, read_inputs

    work = Path(tempfile.mkdtemp(prefix="mmsae-embed-bench-"))
    try:
        model = args.model or build_clip_b32(work / "clip-b32")
        backend = load_backend(parse_model(model, args.weights))
        photos = sorted((SHARED / "coco-mini" / "images").glob("*.jpg"))
        (work / "imgs").mkdir()
        for i in range(args.images):  # distinct files, real JPEG decoding each time
            shutil.copyfile(photos[i % len(photos)], work / "imgs" / f"{i:05d}.jpg")
        img_inputs = read_inputs(work / "imgs")
        paths = [it.path for it in img_inputs.images]
        caps = json.loads((SHARED / "coco-val2017-captions/captions_val2017.json").read_text())["annotations"]
        texts = list(dict.fromkeys(a["caption"].strip() for a in caps))[: args.texts]
        txt_inputs = EmbedInputs("text", texts=[TextItem(t, -1, f"bench:{i}") for i, t in enumerate(texts)])
        cfg = EmbedConfig(
            batch_size=args.batch_size, text_batch_size=args.text_batch_size, num_workers=args.workers, progress=False
        )
        # warm-up: first-call allocations and the page cache
        bare_images(backend, paths[: args.batch_size], args.batch_size)
        bare_texts(backend, texts[: args.text_batch_size], args.text_batch_size)
        runs: dict[str, list[float]] = {
            k: [] for k in ("bare images", "pipeline images", "bare texts", "pipeline texts")
        }
        for _ in range(args.repeats):
            runs["bare images"].append(bare_images(backend, paths, args.batch_size))
            runs["pipeline images"].append(pipeline(backend, img_inputs, cfg, work))
            runs["bare texts"].append(bare_texts(backend, texts, args.text_batch_size))
            runs["pipeline texts"].append(pipeline(backend, txt_inputs, cfg, work))
        med = {k: statistics.median(v) for k, v in runs.items()}
        result = {
            "model": backend.model_id,
            "images": len(paths),
            "texts": len(texts),
            "workers": _num_workers(cfg),
            "torch_threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
            "items_per_s": med,
            "runs": runs,
            "ratio_images": med["pipeline images"] / med["bare images"],
            "ratio_texts": med["pipeline texts"] / med["bare texts"],
        }
        if args.json:
            print(json.dumps(result, indent=2))
            return
        print(
            f"{backend.model_id}: {len(paths)} images, {len(texts)} captions, {result['workers']} workers, "
            f"{result['torch_threads']} torch threads, {result['cores']} cores; median of {args.repeats}"
        )
        print(f"{'':18}{'items/s':>10}{'runs':>30}")
        for k, v in runs.items():
            print(f"{k:18}{med[k]:10.1f}{'  ' + ' '.join(f'{x:.1f}' for x in v):>30}")
        print(f"pipeline / bare: images {result['ratio_images']:.3f}, texts {result['ratio_texts']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
