"""BatchTopK SAE (Bussmann et al., 2024): the B·k largest activations over the whole batch.

Inference uses a threshold instead (a JumpReLU), so a row's code no longer depends on its batch:
θ = the mean over batches of the smallest activation a batch keeps, the paper's estimator. Training
keeps a running average of it, but that average lags the moving weights (after one short pass it
was still mostly its first batches' value, and inference kept 7 of k = 16 latents); so after the
last step `calibrate_` sets θ from the final weights on fresh training batches. The threshold is
stored per latent ([F]), which is exactly a SAELens JumpReLU's, so it exports as one.
"""

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
    fired_latents,
    recon_loss,
)
from mmsae.models.kernels.select import batch_top_n
from mmsae.models.kernels.sparse_decode import decode_csr
from mmsae.models.kernels.sparse_encode import batch_topk_encode


@dataclass(frozen=True)
class BatchTopKConfig(SAEConfig):
    """BatchTopK SAE."""

    k: int = 32
    """Mean active latents per row over a batch."""
    aux_k: int = 256
    """Dead latents used by the AuxK loss."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    threshold_momentum: float = 0.01
    """Rate of the running average that sets the inference threshold."""


class BatchTopKSAE(SparseAutoencoder):
    architecture = "batchtopk"
    config_class = BatchTopKConfig
    cfg: BatchTopKConfig

    def __init__(self, cfg: BatchTopKConfig):
        check_k(cfg)
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.dict_size))

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        return pre_BF * (pre_BF > self.threshold) * (pre_BF > 0)

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        x_BD = xs[ALL]
        B, F_ = len(x_BD), self.cfg.dict_size
        # the encoder GEMM is the step's only O(B·F·D) work (see mmsae.models.kernels.sparse_encode)
        rows, cols, vals, aux_idx, aux_val = batch_topk_encode(
            x_BD, self.W_enc, self.b_enc, self.b_dec, B * self.cfg.k, dead_F, self.cfg.aux_k
        )
        crow = torch.zeros(B + 1, dtype=torch.long, device=x_BD.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=B), 0)
        x_hat_BD = decode_csr(crow, cols, vals, self.W_dec) + self.b_dec
        mse = recon_loss(x_BD, x_hat_BD)
        aux = auxk_from_selection(self.W_dec, aux_idx, aux_val, x_BD, x_hat_BD)
        with torch.no_grad():
            if len(vals):
                m = self.cfg.threshold_momentum
                smallest = vals.min()
                if step == 0 and float(self.threshold[0]) == 0.0:
                    self.threshold.fill_(smallest)
                else:
                    self.threshold.mul_(1 - m).add_(m * smallest)
        fired_F = fired_latents(cols, vals, F_)
        l0 = torch.tensor(len(vals) / B)
        return LossOutput(
            mse + self.cfg.aux_coef * aux,
            x_hat_BD,
            fired_F,
            l0,
            {"mse": mse.detach(), "auxk": aux.detach(), "threshold": self.threshold.mean().detach()},
        )

    calibration_batches = 16

    @torch.no_grad()
    def calibrate_(self, batches) -> None:
        """θ = mean over the batches of the (B·k)-th largest positive pre-activation: the smallest
        activation BatchTopK keeps in that batch, with the final weights."""
        kept = []
        for xs in batches:
            x_BD = xs[ALL]
            _, _, vals_N = batch_top_n(self.pre_acts(x_BD).contiguous(), len(x_BD) * self.cfg.k)
            if len(vals_N):
                kept.append(float(vals_N.min()))
        if kept:
            self.threshold.fill_(sum(kept) / len(kept))

    @torch.no_grad()
    def fold_input_normalization_(self, stats) -> None:
        """The threshold is in code units, which become raw units divided by the scale."""
        super().fold_input_normalization_(stats)
        self.threshold.div_(stats[ALL][1])

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.threshold}
