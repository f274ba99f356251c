"""mmsae's CUDA paths against their CPU twins: the sparse encoders' gradients, a training run, the
world CLIP's training and its embeddings. They need a CUDA GPU, so they skip (with the reason)
everywhere else, CI included; `benchmarks/gpu_check.sh` runs them where a GPU is lent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsae.data.store import StoreWriter
from mmsae.models.io import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer
from tests.models.kernels.test_sparse_encode import (
    _assert_same_loss_and_grads,
    _dense_reference,
    _problem,
    _sparse,
)

GPU = "cuda"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)"),
]


def _to_cuda(x, params, dead):
    return x.to(GPU), [p.to(GPU) for p in params], None if dead is None else dead.to(GPU)


@pytest.mark.parametrize("B, D, F_, k, n_dead, aux_k", [(37, 12, 80, 7, 30, 16), (128, 32, 256, 16, 100, 64)])
def test_sparse_topk_gradients_equal_dense_autograd_on_cuda(B, D, F_, k, n_dead, aux_k):
    x, params, dead = _to_cuda(*_problem(B, D, F_, n_dead, seed=B))
    g = _assert_same_loss_and_grads(_dense_reference, _sparse, x, params, k, dead, aux_k)
    assert g[0].device.type == GPU and (g[1] != 0).sum() > 0


def _store(root, rows=6000, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((64, dim)).astype(np.float32)
    idx = rng.integers(0, 64, (rows, 4))
    x = np.einsum("na,nad->nd", rng.lognormal(0, 0.5, (rows, 4)).astype(np.float32), dirs[idx]) + 3.0
    with StoreWriter(root, dim=dim, model_id="cuda-test") as w:
        w.append(x, "image")
    return root


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu"])
def test_training_on_cuda_matches_cpu(tmp_path, arch):
    """Same data, seed and batches on both devices: the held-out FVU agrees closely (kernels differ,
    so not bit for bit) and the model saved from CUDA loads and encodes on the CPU."""
    store = _store(tmp_path / "s")
    cpu, gpu = (
        Trainer(
            store,
            tmp_path / f"sae{i}",
            TrainConfig(
                arch=arch, dict_size=256, k=8, batch_size=256, epochs=10, checkpoint_every=0, device=device, seed=0
            ),
            progress=False,
        )
        .run()
        .val_metrics["fvu"]
        for i, device in enumerate(("cpu", GPU))
    )
    assert gpu < 0.8 and math.isclose(gpu, cpu, rel_tol=0.1, abs_tol=0.02), (cpu, gpu)
    sae = load_sae(tmp_path / "sae1")
    assert next(sae.parameters()).device.type == "cpu"
    x = torch.randn(5, 32) + 3.0
    assert sae(x).x_hat_BD.shape == (5, 32)


def test_world_clip_trains_on_cuda_and_embeds_as_on_cpu(tmp_path):
    from mmsae.backends.hf import HFBackend  # noqa: F401 (the [dev] extra)
    from mmsae.backends.registry import load_backend, parse_model
    from mmsae.train.clip import train_world_clip
    from mmsae.world import render, sample_scenes
    from tests.world.test_model import TINY, _tiny_cfg

    res = train_world_clip(tmp_path / "m", _tiny_cfg(epochs=50), TINY, measure=False, progress=False, device=GPU)
    assert res.last_loss < math.log(16) - 0.3 < res.first_loss
    scenes = sample_scenes(6, seed=3)
    pictures = [render(s, size=32) for s in scenes]
    captions = ["a red circle", "two blue squares on a grey background"]
    out = []
    for device in ("cpu", GPU):
        backend = load_backend(parse_model(f"hf:{tmp_path / 'm'}"), device=device)
        out.append((backend.embed_images(pictures), backend.embed_texts(captions)))
    for a, b in zip(*out):
        cos = (np.asarray(a, np.float64) * np.asarray(b, np.float64)).sum(1)
        assert cos.min() > 0.9999, cos


@pytest.mark.parametrize("arch", ["topk", "matryoshka"])
def test_an_ordinary_cuda_step_waits_for_the_device_once(tmp_path, arch):
    """CUDA's own sync detector (`set_sync_debug_mode`) sees one synchronising operation in a step
    that neither logs nor checkpoints: AuxK's count of dead latents, in `topk_encode`. Batches come
    from page-locked memory and the non-finite flag is copied back asynchronously (the CPU twin of
    this check is tests/train/test_host_syncs.py)."""
    import warnings

    store = _store(tmp_path / "s")
    cfg = TrainConfig(
        arch=arch,
        dict_size=256,
        k=8,
        batch_size=256,
        steps=30,
        log_every=1000,
        checkpoint_every=0,
        dead_after=256,
        device=GPU,
    )
    t = Trainer(store, tmp_path / "sae", cfg, progress=False)
    state = t.start()
    batches = t._staged(t._batches(t.stream_cfg))
    for _ in range(3):
        t.step(state, next(batches))
    staged = [next(batches) for _ in range(6)]
    assert all(a.is_pinned() for b in staged for a in b)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for batch in staged:
                t.step(state, batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == len(staged), [(w.filename, w.lineno) for w in syncs]
    assert all(w.filename.endswith("sparse_encode.py") for w in syncs), [(w.filename, w.lineno) for w in syncs]
    assert bool((state.since_fired_F >= t.dead_after).any())  # AuxK ran
    t.close(state)
