"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead"): a per-latent threshold θ_i below which
a latent is zero, trained directly on an L0 penalty.

    z = JumpReLU_θ(π),  π = (x − b_dec) W_enc + b_enc,  JumpReLU_θ(π) = π · H(π − θ)
    L = ‖x − x̂‖² + λ ‖z‖₀,  ‖z‖₀ = Σ_i H(π_i − θ_i)

H has no useful gradient, so θ learns through the paper's straight-through pseudo-derivatives
with a rectangle kernel K(u) = 1[|u| < ½] of bandwidth ε:

    ∂JumpReLU_θ(π)/∂θ := −(θ/ε) K((π − θ)/ε),   ∂H(π − θ)/∂θ := −(1/ε) K((π − θ)/ε)

(the gradient to π is the ordinary one through π·H, and none through the L0 term). θ = exp(log θ)
stays positive. Both pseudo-derivatives are one autograd Function each; `tests/models` checks them
against the formulas written out directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mmsae.models.base import ALL, LossOutput, SAEConfig, SparseAutoencoder, recon_loss, warmed_up


def _window(pre_BF: torch.Tensor, threshold_F: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """K((π − θ)/ε) / ε: the rectangle kernel's density at each pre-activation."""
    return ((pre_BF - threshold_F).abs() < bandwidth / 2).to(pre_BF.dtype) / bandwidth


class JumpReLUFunction(torch.autograd.Function):
    """π · H(π − θ), with ∂/∂θ := −(θ/ε) K((π − θ)/ε)."""

    @staticmethod
    def forward(ctx, pre_BF: torch.Tensor, threshold_F: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre_BF, threshold_F)
        ctx.bandwidth = bandwidth
        return pre_BF * (pre_BF > threshold_F)

    @staticmethod
    def backward(ctx, grad_BF: torch.Tensor):
        pre_BF, threshold_F = ctx.saved_tensors
        grad_pre = grad_BF * (pre_BF > threshold_F)
        grad_threshold = -(threshold_F * _window(pre_BF, threshold_F, ctx.bandwidth) * grad_BF).sum(0)
        return grad_pre, grad_threshold, None


class StepFunction(torch.autograd.Function):
    """H(π − θ), with ∂/∂θ := −(1/ε) K((π − θ)/ε) and no gradient to π."""

    @staticmethod
    def forward(ctx, pre_BF: torch.Tensor, threshold_F: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre_BF, threshold_F)
        ctx.bandwidth = bandwidth
        return (pre_BF > threshold_F).to(pre_BF.dtype)

    @staticmethod
    def backward(ctx, grad_BF: torch.Tensor):
        pre_BF, threshold_F = ctx.saved_tensors
        grad_threshold = -(_window(pre_BF, threshold_F, ctx.bandwidth) * grad_BF).sum(0)
        return None, grad_threshold, None


@dataclass(frozen=True)
class JumpReLUConfig(SAEConfig):
    """JumpReLU SAE. Values are in the units the SAE trains in (inputs scaled to mean norm √D)."""

    l0_coef: float = 1.0
    """λ of the L0 penalty λ Σ_i H(π_i − θ_i), per row."""
    l0_warmup_frac: float = 0.05
    """Share of training over which λ ramps up linearly from 0 (as Gemma Scope does)."""
    bandwidth: float = 0.05
    """ε, the width of the window around θ in which the threshold's pseudo-gradient is non-zero."""
    threshold_init: float = 0.05
    """Every θ_i's value before `init_from_sample_` (which is what training starts from)."""
    init_fire_rate: float = 0.05
    """Training starts each θ_i at the pre-activation quantile where latent i fires on this share of
    the initialisation sample: with log θ moving about one learning rate per Adam step, a tiny
    θ would take thousands of steps just to reach the data's scale."""


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    config_class = JumpReLUConfig
    cfg: JumpReLUConfig

    def __init__(self, cfg: JumpReLUConfig):
        if not (cfg.bandwidth > 0 and cfg.threshold_init > 0):
            raise ValueError(
                f"bandwidth and threshold_init must be positive, got {cfg.bandwidth}, {cfg.threshold_init}"
            )
        super().__init__(cfg)
        self.log_threshold = torch.nn.Parameter(torch.full((cfg.dict_size,), math.log(cfg.threshold_init)))

    option_fields = frozenset({"l0_coef"})

    @classmethod
    def uses_k(cls, cfg) -> bool:
        return False

    @classmethod
    def sparsity_field(cls, opts) -> str:
        return "l0_coef"

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict:
        return {"d_in": d_in, "dict_size": cfg.dict_size, "l0_coef": cfg.l0_coef}

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        if "log_threshold" in self._parameters:  # not yet during the base class's __init__
            with torch.no_grad():
                self.log_threshold.fill_(math.log(self.cfg.threshold_init))

    @torch.no_grad()
    def init_from_sample_(self, xs, b_dec_init: str) -> None:
        super().init_from_sample_(xs, b_dec_init)
        x_ND = xs[ALL][:8192] - self.b_dec
        n = len(x_ND)
        kth = min(n, max(1, round((1.0 - self.cfg.init_fire_rate) * n)))  # fires above its kth smallest value
        for lo in range(0, self.cfg.dict_size, 1024):  # in column blocks: a dense [N, F] block is GBs at large F
            hi = min(lo + 1024, self.cfg.dict_size)
            pre_NB = x_ND @ self.W_enc[:, lo:hi] + self.b_enc[lo:hi]
            q_B = pre_NB.kthvalue(kth, dim=0).values
            self.log_threshold[lo:hi] = q_B.clamp_min(self.cfg.threshold_init).log()

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        return pre_BF * (pre_BF > self.threshold)

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        x_BD = xs[ALL]
        pre_BF = self.pre_acts(x_BD)
        threshold_F = self.threshold
        codes_BF = JumpReLUFunction.apply(pre_BF, threshold_F, self.cfg.bandwidth)
        x_hat_BD = self.decode(codes_BF)
        mse = recon_loss(x_BD, x_hat_BD)
        l0 = StepFunction.apply(pre_BF, threshold_F, self.cfg.bandwidth).sum(-1).mean()
        lam = warmed_up(self.cfg.l0_coef, self.cfg.l0_warmup_frac, step, total_steps)
        fired_F = (codes_BF > 0).any(dim=0)
        l0_now = l0.detach()
        parts = {
            "mse": mse.detach(),
            "l0_penalty": l0_now.detach(),
            "l0_coef": lam,
            "threshold": threshold_F.detach().mean(),
        }
        return LossOutput(mse + lam * l0, x_hat_BD, fired_F, l0_now, parts)

    @torch.no_grad()
    def fold_input_normalization_(self, stats) -> None:
        """Thresholds are in code units, which become raw units divided by the scale."""
        super().fold_input_normalization_(stats)
        self.log_threshold.sub_(math.log(stats[ALL][1]))

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {"log_threshold": self.log_threshold}
