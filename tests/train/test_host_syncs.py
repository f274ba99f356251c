"""On a GPU, a training step should not read device values on the host: each read (`.item()`,
`bool(t)`, a shape that depends on values) waits until the device has run every queued kernel,
and the device then idles while Python prepares the rest of the step. These tests run ordinary
steps (not logging or checkpoint steps) on the CPU along the paths a GPU takes (no compiled CPU
kernels; `reads_are_free` false) on an imported store, and list the operations that would read,
with the mmsae function that asked. The one read left is AuxK's count of dead latents, at the
start of the encoder (as in sparsify's step): it sizes the selection, and with no dead latent
AuxK costs nothing. Copies to the host are not seen here (everything is on the host); the CUDA
twin, tests/gpu/test_cuda.py, runs under CUDA's own detector."""

import sys

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmsae.data.importers import import_embeddings
from mmsae.errors import MmsaeError
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

aten = torch.ops.aten
_READ_OPS = {
    aten._local_scalar_dense.default,  # .item(), bool(), float(), int()
    aten.is_nonzero.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.bincount.default,  # reads the largest id for its length
    aten.equal.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}


def _reads_on_host(func, args, kwargs) -> bool:
    if func in _READ_OPS:
        return True
    if func.overloadpacket is aten.repeat_interleave:  # a tensor of repeats, no output_size: sums them
        return any(isinstance(a, torch.Tensor) for a in args[:2]) and kwargs.get("output_size") is None
    if func.overloadpacket in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])  # a mask: nonzero
    return False


def _caller() -> str:
    """The innermost mmsae function on the stack."""
    frame = sys._getframe(2)
    while frame is not None and "/mmsae/" not in frame.f_code.co_filename.replace("\\", "/"):
        frame = frame.f_back
    return frame.f_code.co_name if frame is not None else "?"


class HostReads(TorchDispatchMode):
    """Records every operation run inside it that would make the host wait for a GPU, and the
    mmsae function that ran it."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _reads_on_host(func, args, kwargs):
            self.ops.append((str(func), _caller()))
        return func(*args, **kwargs)


@pytest.fixture
def gpu_paths(monkeypatch):
    from mmsae.models.kernels import select, sparse_decode, sparse_encode
    from mmsae.train import trainer

    monkeypatch.setattr(select, "compiled_kernel", lambda module, name: None)
    monkeypatch.setattr(sparse_decode, "compiled_kernel", lambda module, name: None)
    monkeypatch.setattr(sparse_encode, "reads_are_free", lambda where: False)
    monkeypatch.setattr(trainer, "reads_are_free", lambda where: False)


@pytest.fixture
def stores(tmp_path, rng):
    for name in ("i", "t"):
        x = rng.standard_normal((3000, 24)).astype(np.float32) + 1.0
        np.save(tmp_path / f"{name}.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    import_embeddings(tmp_path / "single", embeddings=tmp_path / "i.npy", modality="image")
    import_embeddings(tmp_path / "paired", images=tmp_path / "i.npy", texts=tmp_path / "t.npy")
    return tmp_path


def _trainer(stores, arch, **kw):
    store = stores / ("paired" if arch in ("multimodal", "vlsae") else "single")
    options = dict(
        dict_size=128,
        k=4,
        batch_size=64,
        steps=40,
        log_every=1000,
        checkpoint_every=0,
        dead_after=64,  # latents go dead within the test, so AuxK's selection runs
        device="cpu",
    )
    cfg = TrainConfig(arch=arch, **(options | kw))
    t = Trainer(store, stores / f"sae-{arch}", cfg, progress=False)
    return t, t.start(), t._batches(t.stream_cfg)


STEPS = 6


def _steps_reads(stores, arch, **kw) -> tuple[list[tuple[str, str]], bool]:
    t, state, batches = _trainer(stores, arch, **kw)
    for _ in range(4):  # step 0 logs; later ones have dead latents
        t.step(state, next(batches))
    with HostReads() as reads:
        for _ in range(STEPS):
            t.step(state, next(batches))
    dead = bool((state.since_fired_F >= t.dead_after).any())
    t.close(state)
    return reads.ops, dead


@pytest.mark.parametrize("arch, counts", [("topk", 1), ("matryoshka", 1), ("multimodal", 2), ("vlsae", 0)])
def test_an_ordinary_step_reads_only_the_dead_count(gpu_paths, stores, arch, counts):
    """`counts`: AuxK selections per step (MultiModalSAE encodes each modality; VL-SAE has none)."""
    kw = {"k": 8} if arch == "matryoshka" else {}
    ops, dead = _steps_reads(stores, arch, **kw)
    assert ops == [("aten._local_scalar_dense.default", "topk_encode")] * (counts * STEPS)
    assert dead or arch == "vlsae"  # AuxK's selection was exercised


def test_the_counter_sees_the_cpu_paths_reads(stores):
    """On the CPU, reads are free and taken: AuxK gathers the dead latents' columns by their ids."""
    ops, dead = _steps_reads(stores, "topk")
    assert dead and ops.count(("aten.nonzero.default", "forward")) == STEPS


def test_a_non_finite_loss_is_read_a_step_later_and_skipped(gpu_paths, stores):
    """The fused optimizer skips the bad step on the device; the next step names it."""
    t, state, batches = _trainer(stores, "topk")
    for _ in range(3):
        t.step(state, next(batches))
    bad = next(batches)[0].copy()
    bad[5, 2] = np.nan
    before = {n: p.detach().clone() for n, p in state.sae.named_parameters()}
    t.step(state, (bad,))  # not read yet
    for n, p in state.sae.named_parameters():
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=1e-6, msg=n)  # W_dec renormalised only
    with pytest.raises(MmsaeError) as err:
        t.step(state, next(batches))
    assert "training stopped at step 4 of 40: the loss is nan" in str(err.value)
    assert "1 row(s) with NaN/inf" in str(err.value)
    t.close(state)
