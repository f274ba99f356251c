"""TopK SAE (Gao et al., 2024): keep the k largest activations per row, plus AuxK for dead latents."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmsae.models.base import (
    ALL,
    LossOutput,
    SAEConfig,
    SparseAutoencoder,
    auxk_from_selection,
    check_k,
    dense_from_sparse,
    fired_latents,
    recon_loss,
    topk_sparse,
)
from mmsae.models.kernels.sparse_encode import topk_encode


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    """TopK SAE."""

    k: int = 32
    """Active latents per row."""
    aux_k: int = 256
    """Dead latents used by the AuxK loss (capped at the number of dead ones)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""


class TopKSAE(SparseAutoencoder):
    architecture = "topk"
    config_class = TopKConfig
    fits_encoder_gain = True
    cfg: TopKConfig

    def __init__(self, cfg: TopKConfig):
        check_k(cfg)
        super().__init__(cfg)

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        idx_BK, val_BK = topk_sparse(pre_BF, self.cfg.k)
        return dense_from_sparse(idx_BK, val_BK, self.cfg.dict_size)

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        x_BD = xs[ALL]
        # the encoder GEMM is the step's only O(B·F·D) work: sparse backward, sparse decode
        idx_BK, val_BK, aux_idx, aux_val = topk_encode(
            x_BD, self.W_enc, self.b_enc, self.b_dec, self.cfg.k, dead_F, self.cfg.aux_k, self.select_dtype
        )
        x_hat_BD = self.decode_sparse(idx_BK, val_BK)
        mse = recon_loss(x_BD, x_hat_BD)
        aux = auxk_from_selection(self.W_dec, aux_idx, aux_val, x_BD, x_hat_BD)
        fired_F = fired_latents(idx_BK, val_BK, self.cfg.dict_size)
        l0 = (val_BK > 0).float().sum(dim=-1).mean()
        return LossOutput(mse + self.cfg.aux_coef * aux, x_hat_BD, fired_F, l0, {"mse": mse.item(), "auxk": aux.item()})
