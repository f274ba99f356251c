"""Architectures by name."""

from __future__ import annotations

from mmsae.models.base import SparseAutoencoder
from mmsae.models.batchtopk import BatchTopKSAE
from mmsae.models.gated import GatedSAE
from mmsae.models.jumprelu import JumpReLUSAE
from mmsae.models.matryoshka import MatryoshkaSAE
from mmsae.models.multimodal import MultiModalSAE
from mmsae.models.paired import PairedSAE
from mmsae.models.relu import ReLUSAE
from mmsae.models.topk import TopKSAE
from mmsae.models.vlsae import VLSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder] | type[PairedSAE]] = {
    cls.architecture: cls
    for cls in (TopKSAE, BatchTopKSAE, MatryoshkaSAE, ReLUSAE, GatedSAE, JumpReLUSAE, VLSAE, MultiModalSAE)
}
PAIRED_ARCHITECTURES = tuple(name for name, cls in ARCHITECTURES.items() if cls.paired)
"""Architectures that train on (image, text) pairs."""
SINGLE_ARCHITECTURES = tuple(name for name, cls in ARCHITECTURES.items() if not cls.paired)
"""Single-dictionary architectures, in the order the demo, the Pareto analysis and the report list them."""
DEFAULT_SWEEP_ARCHITECTURES = ("topk", "batchtopk", "matryoshka", "relu")
"""What the demo and `analyze pareto` train unless told otherwise. Gated and JumpReLU are opt-in:
their sparsity is a penalty weight whose good range depends on the data, so they need a sweep of
their own rather than the demo's fixed settings."""


def build_sae(architecture: str, **config) -> SparseAutoencoder | PairedSAE:
    """An untrained SAE of the named architecture; `config` fills its config dataclass."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}") from None
    return cls(cls.config_class.from_dict(config))
