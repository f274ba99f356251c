"""SAE architectures (one file each), the registry, and save/load."""

from mmsae.models.base import LossOutput, SAEConfig, SAEOutput, SparseAutoencoder
from mmsae.models.batchtopk import BatchTopKConfig, BatchTopKSAE
from mmsae.models.io import SAELoadError, load_sae, read_config, save_sae
from mmsae.models.matryoshka import MatryoshkaConfig, MatryoshkaSAE
from mmsae.models.multimodal import MultiModalConfig, MultiModalSAE
from mmsae.models.paired import MODALITIES, ModalityRouter, PairedSAE, as_paired
from mmsae.models.registry import ARCHITECTURES, PAIRED_ARCHITECTURES, build_sae
from mmsae.models.relu import ReLUConfig, ReLUSAE
from mmsae.models.topk import TopKConfig, TopKSAE
from mmsae.models.vlsae import VLSAE, VLSAEConfig

__all__ = [
    "ARCHITECTURES",
    "build_sae",
    "load_sae",
    "save_sae",
    "read_config",
    "SAELoadError",
    "SparseAutoencoder",
    "SAEConfig",
    "SAEOutput",
    "LossOutput",
    "ReLUSAE",
    "ReLUConfig",
    "TopKSAE",
    "TopKConfig",
    "BatchTopKSAE",
    "BatchTopKConfig",
    "MatryoshkaSAE",
    "MatryoshkaConfig",
    "VLSAE",
    "VLSAEConfig",
    "MultiModalSAE",
    "MultiModalConfig",
    "PairedSAE",
    "ModalityRouter",
    "as_paired",
    "MODALITIES",
    "PAIRED_ARCHITECTURES",
]
