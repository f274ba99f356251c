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
from mmsae.models.kernels.gemm import linear
from mmsae.models.kernels.select import topk_rows
from mmsae.models.kernels.sparse_encode import CPU_BLOCK_ROWS, topk_encode


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

    @torch.no_grad()
    def encode_sparse(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The positive codes of `encode`, each row's largest first, without a [B, F] output: on
        CPU the pre-activations of a few hundred rows at a time (they stay in cache) go through
        the compiled row selection."""
        xc_BD, W_FD, k = x_BD - self.b_dec, self.W_enc.T, self.cfg.k
        step = max(1, len(xc_BD)) if xc_BD.device.type != "cpu" else CPU_BLOCK_ROWS
        parts = [topk_rows(linear(xc_BD[lo : lo + step], W_FD, self.b_enc), k) for lo in range(0, len(xc_BD), step)]
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=x_BD.device)
            return empty, empty, x_BD.new_zeros(0)
        val_BK, idx_BK = torch.cat([v for v, _ in parts]), torch.cat([i for _, i in parts])
        live_BK = val_BK > 0
        rows_BK = torch.arange(len(x_BD), device=x_BD.device)[:, None].expand_as(idx_BK)
        return rows_BK[live_BK], idx_BK[live_BK], val_BK[live_BK]

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
        return LossOutput(
            mse + self.cfg.aux_coef * aux, x_hat_BD, fired_F, l0, {"mse": mse.detach(), "auxk": aux.detach()}
        )
