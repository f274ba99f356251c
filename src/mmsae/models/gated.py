"""Gated SAE (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse
Autoencoders"): which latents fire and how strongly are decided by two paths sharing one matrix,
so the L1 penalty shrinks only the gate, not the magnitudes it would otherwise bias downwards.

    π_gate = (x − b_dec) W_gate + b_gate,   W_gate = W_enc, b_gate = b_enc
    π_mag  = (x − b_dec) W_mag + b_mag,     W_mag[:, i] = exp(r_mag,i) · W_gate[:, i]
    z = H(π_gate) ⊙ ReLU(π_mag),            x̂ = z W_dec + b_dec
    L = ‖x − x̂‖² + λ ‖ReLU(π_gate)‖₁ + ‖x − (ReLU(π_gate) sg(W_dec) + sg(b_dec))‖²

sg is stop-gradient: the auxiliary term (reconstruction from the gate's own activations through a
frozen decoder) is what trains the gate, which H alone would not. Decoder rows stay at unit norm
(the trainer renormalises after each step), as the paper requires for the L1 term to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmsae.models.base import ALL, LossOutput, SparseAutoencoder, recon_loss, warmed_up
from mmsae.models.kernels.gemm import linear
from mmsae.models.relu import L1Penalty, ReLUConfig


@dataclass(frozen=True)
class GatedConfig(ReLUConfig):
    """Gated SAE: the L1 weight applies to the gate's ReLU'd pre-activations."""


class GatedSAE(L1Penalty, SparseAutoencoder):
    architecture = "gated"
    config_class = GatedConfig
    cfg: GatedConfig

    def __init__(self, cfg: GatedConfig):
        super().__init__(cfg)
        self.r_mag = nn.Parameter(torch.zeros(cfg.dict_size))
        self.b_mag = nn.Parameter(torch.zeros(cfg.dict_size))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        if "r_mag" in self._parameters:  # not yet during the base class's __init__
            with torch.no_grad():
                self.r_mag.zero_()
                self.b_mag.zero_()

    def _paths(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(π_gate, π_mag): one GEMM serves both, since W_mag is W_gate with rescaled columns."""
        proj_BF = linear(x_BD - self.b_dec, self.W_enc.T, None)
        return proj_BF + self.b_enc, proj_BF * self.r_mag.exp() + self.b_mag

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        gate_BF, mag_BF = self._paths(x_BD)
        return (gate_BF > 0) * F.relu(mag_BF)

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        x_BD = xs[ALL]
        gate_BF, mag_BF = self._paths(x_BD)
        codes_BF = (gate_BF > 0) * F.relu(mag_BF)
        x_hat_BD = self.decode(codes_BF)
        mse = recon_loss(x_BD, x_hat_BD)
        gate_acts_BF = F.relu(gate_BF)
        l1 = gate_acts_BF.sum(-1).mean()
        aux = recon_loss(x_BD, gate_acts_BF @ self.W_dec.detach() + self.b_dec.detach())
        lam = warmed_up(self.cfg.l1_coef, self.cfg.l1_warmup_frac, step, total_steps)
        fired_F = (codes_BF > 0).any(dim=0)
        l0 = (codes_BF > 0).float().sum(dim=-1).mean()
        parts = {"mse": mse.detach(), "l1": l1.detach(), "aux": aux.detach(), "l1_coef": lam}
        return LossOutput(mse + lam * l1 + aux, x_hat_BD, fired_F, l0, parts)

    @torch.no_grad()
    def fold_input_normalization_(self, stats) -> None:
        """Both paths' biases are in code units, which become raw units divided by the scale."""
        super().fold_input_normalization_(stats)
        self.b_mag.div_(stats[ALL][1])

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {"r_mag": self.r_mag, "b_mag": self.b_mag}
