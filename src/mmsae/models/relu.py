"""The classic ReLU SAE with an L1 penalty weighted by decoder norm (Anthropic, 2023-24)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmsae.models.base import ALL, LossOutput, SAEConfig, SparseAutoencoder, recon_loss, warmed_up
from mmsae.models.kernels.sparse_decode import decode_csr
from mmsae.models.kernels.sparse_encode import relu_encode


@dataclass(frozen=True)
class ReLUConfig(SAEConfig):
    """ReLU SAE."""

    l1_coef: float = 5.0
    """λ of the L1 term λ Σ_i z_i ‖d_i‖ (on inputs scaled to mean norm √D)."""
    l1_warmup_frac: float = 0.05
    """Share of training over which λ ramps up linearly from 0."""


class L1Penalty:
    """What training asks of an architecture whose sparsity is an L1 weight (`TrainingHooks`):
    ReLU and Gated share it."""

    option_fields = frozenset({"l1_coef"})

    @classmethod
    def uses_k(cls, cfg) -> bool:
        return False

    @classmethod
    def sparsity_field(cls, opts) -> str:
        return "l1_coef"

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict:
        return {"d_in": d_in, "dict_size": cfg.dict_size, "l1_coef": cfg.l1_coef}


class ReLUSAE(L1Penalty, SparseAutoencoder):
    architecture = "relu"
    config_class = ReLUConfig

    cfg: ReLUConfig

    sparse_below: float = 1 / 16
    """Train through the sparse encoder while the last step's L0 was under this share of F; the
    dense step is faster while codes are dense (at the start, before the L1 term has acted)."""
    _last_l0: float = float("inf")
    """L0 of the last training step (not saved: a resumed run starts dense for one step)."""

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        lam = warmed_up(self.cfg.l1_coef, self.cfg.l1_warmup_frac, step, total_steps)
        if self._last_l0 < self.sparse_below * self.cfg.dict_size:
            out = self._sparse_loss(xs[ALL], lam)
        else:
            out = self._dense_loss(xs[ALL], lam)
        self._last_l0 = float(out.l0)
        return out

    def _dense_loss(self, x_BD, lam) -> LossOutput:
        codes_BF = F.relu(self.pre_acts(x_BD))
        x_hat_BD = self.decode(codes_BF)
        mse = recon_loss(x_BD, x_hat_BD)
        l1 = (codes_BF * self.W_dec.norm(dim=1)).sum(dim=-1).mean()
        fired_F = (codes_BF > 0).any(dim=0)
        l0 = (codes_BF > 0).float().sum(dim=-1).mean()
        return LossOutput(
            mse + lam * l1, x_hat_BD, fired_F, l0, {"mse": mse.detach(), "l1": l1.detach(), "l1_coef": lam}
        )

    def _sparse_loss(self, x_BD, lam) -> LossOutput:
        """The same loss from the positive codes alone: the encoder GEMM is the only O(B·F·D) work."""
        B, F_ = len(x_BD), self.cfg.dict_size
        rows_N, cols_N, vals_N = relu_encode(x_BD, self.W_enc, self.b_enc, self.b_dec)
        crow = torch.zeros(B + 1, dtype=torch.long, device=x_BD.device)
        crow[1:] = torch.bincount(rows_N, minlength=B).cumsum(0)
        x_hat_BD = decode_csr(crow, cols_N, vals_N, self.W_dec) + self.b_dec
        mse = recon_loss(x_BD, x_hat_BD)
        l1 = (vals_N * self.W_dec.norm(dim=1)[cols_N]).sum() / B
        fired_F = torch.bincount(cols_N, minlength=F_) > 0
        l0 = torch.tensor(len(vals_N) / B)
        return LossOutput(
            mse + lam * l1, x_hat_BD, fired_F, l0, {"mse": mse.detach(), "l1": l1.detach(), "l1_coef": lam}
        )
