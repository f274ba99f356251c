"""On a GPU, a training step must not read device values on the host: each read (`.item()`,
`bool(t)`, a shape that depends on values) waits until the device has run every queued kernel,
and the device then idles while Python prepares the next step. These tests run ordinary steps
(not logging or checkpoint steps) on the CPU along the paths a GPU takes (no compiled CPU
kernels; `reads_are_free` false) on an imported store, and count the operations that would read."""

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


class HostReads(TorchDispatchMode):
    """Records every operation run inside it that would make the host wait for a GPU."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _reads_on_host(func, args, kwargs):
            self.ops.append(str(func))
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


def _steps_reads(stores, arch, **kw) -> tuple[list[str], bool]:
    t, state, batches = _trainer(stores, arch, **kw)
    for _ in range(4):  # step 0 logs; later ones have dead latents
        t.step(state, next(batches))
    with HostReads() as reads:
        for _ in range(6):
            t.step(state, next(batches))
    dead = bool((state.since_fired_F >= t.dead_after).any())
    t.close(state)
    return reads.ops, dead


@pytest.mark.parametrize("arch", ["topk", "matryoshka", "multimodal", "vlsae"])
def test_an_ordinary_step_reads_nothing_on_the_host(gpu_paths, stores, arch):
    kw = {"k": 8} if arch == "matryoshka" else {}
    ops, dead = _steps_reads(stores, arch, **kw)
    assert ops == []
    assert dead or arch == "vlsae"  # AuxK's selection was exercised (VL-SAE has none)


def test_the_counter_sees_the_cpu_paths_reads(stores):
    """On the CPU, reads are free and taken: the dead latents are counted, each step's loss read."""
    ops, dead = _steps_reads(stores, "topk")
    assert dead and "aten._local_scalar_dense.default" in ops and "aten.nonzero.default" in ops


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
