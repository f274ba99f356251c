"""What every multimodal SAE shares: one concept space, an encoder and a decoder per modality.

A paired SAE maps an image embedding or a text embedding to a code z [F] in one shared
dictionary of concepts, and decodes a code into either modality. It trains on matched
(image, text) pairs. Single-input SAEs join this interface through `ModalityRouter` (one SAE for
both modalities, or one SAE per modality), so cross-modal evaluation has one code path.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mmsae.models.base import SAEConfig, SAEOutput, SparseAutoencoder, TrainingHooks, init_bias_

MODALITIES = ("image", "text")


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


class PairedSAE(TrainingHooks, nn.Module):
    """Base class of multimodal SAEs; subclasses define encode/decode/training_loss and their tensors."""

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    paired: ClassVar[bool] = True
    groups: ClassVar[tuple[str, ...]] = MODALITIES
    cfg: Any

    def encode(self, x_BD: torch.Tensor, modality: str) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes_BF: torch.Tensor, modality: str) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x_BD: torch.Tensor, modality: str) -> SAEOutput:
        codes_BF = self.encode(x_BD, modality)
        return SAEOutput(codes_BF, self.decode(codes_BF, modality))

    def input_dim(self, modality: str) -> int:
        raise NotImplementedError

    def decoder_directions(self, modality: str) -> torch.Tensor:
        """[F, D_modality] rows: where each concept points in that modality's embedding space."""
        raise NotImplementedError

    def init_from_sample_(self, xs, b_dec_init: str) -> None:
        """Each modality's decoder bias from that modality's sample."""
        for m, x_ND in xs.items():
            init_bias_(getattr(self, f"b_dec_{check_modality(m)}"), x_ND, b_dec_init)

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Everything `save_sae` writes, by name."""
        return {name: p for name, p in self.named_parameters()} | {n: b for n, b in self.named_buffers()}

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        pass

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        pass


class ModalityRouter(nn.Module):
    """Single-input SAEs seen as a paired SAE: `{"image": sae_a, "text": sae_b}` (the same SAE twice
    for a pooled SAE). Codes of two independent SAEs live in two unrelated concept spaces; that is
    exactly the baseline cross-modal evaluation compares against."""

    paired: ClassVar[bool] = True
    architecture: ClassVar[str] = "router"

    def __init__(self, saes: dict[str, SparseAutoencoder]):
        super().__init__()
        missing = [m for m in MODALITIES if m not in saes]
        if missing:
            raise ValueError(f"ModalityRouter needs an SAE for {missing}")
        sizes = {m: s.cfg.dict_size for m, s in saes.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the SAEs must share one dictionary size, got {sizes}")
        self.saes = nn.ModuleDict(saes)
        self.cfg = next(iter(saes.values())).cfg
        self.shared_dictionary = saes["image"] is saes["text"]

    def encode(self, x_BD, modality):
        return self.saes[check_modality(modality)].encode(x_BD)

    def decode(self, codes_BF, modality):
        return self.saes[check_modality(modality)].decode(codes_BF)

    def forward(self, x_BD, modality) -> SAEOutput:
        return self.saes[check_modality(modality)](x_BD)

    def input_dim(self, modality: str) -> int:
        return self.saes[modality].cfg.d_in

    def decoder_directions(self, modality: str) -> torch.Tensor:
        return self.saes[modality].W_dec


def as_paired(model) -> PairedSAE | ModalityRouter:
    """A paired SAE as is; a single SAE as the same SAE for both modalities; a dict as a router."""
    if isinstance(model, dict):
        return ModalityRouter(model)
    if getattr(model, "paired", False):
        return model
    if isinstance(model, SparseAutoencoder):
        return ModalityRouter({"image": model, "text": model})
    raise TypeError(f"not an SAE: {type(model).__name__}")
