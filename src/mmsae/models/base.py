"""What every SAE shares: parameters, encode/decode, the unit-norm decoder, folding.

An SAE maps an embedding x [D] to a sparse code z [F] and back:

    z = act((x - b_dec) @ W_enc + b_enc),    x̂ = z @ W_dec + b_dec

Subclasses choose `act` (ReLU, TopK, BatchTopK threshold, Matryoshka TopK) and their training
loss. Shape suffixes: B batch, D input dim, F dictionary size, K active latents per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmsae.models.kernels.gemm import linear
from mmsae.models.kernels.sparse_decode import decode_topk


@dataclass(frozen=True)
class SAEConfig:
    """Fields every architecture has."""

    d_in: int
    """Input (embedding) dimension D."""
    dict_size: int
    """Number of latents F."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kwargs)


@dataclass(frozen=True)
class SAEOutput:
    """Result of a forward pass."""

    codes_BF: torch.Tensor
    """Dense sparse codes z."""
    x_hat_BD: torch.Tensor
    """Reconstruction x̂."""


@dataclass(frozen=True)
class LossOutput:
    """A training step's loss, with its parts for logging."""

    loss: torch.Tensor
    x_hat_BD: torch.Tensor
    """Reconstruction (training-mode encoding)."""
    fired_F: torch.Tensor
    """Bool: which latents were active in this batch (for dead-latent tracking)."""
    l0: torch.Tensor
    """Mean active latents per row in this batch."""
    parts: dict[str, torch.Tensor | float]
    """The loss's terms for the log, left on the device (a read there would wait for the step):
    the trainer reads them on logging steps only."""
    recons: dict[str, torch.Tensor] | None = None
    """The reconstruction of each input group when there are several (paired SAEs: each modality;
    x_hat_BD is then the first group's)."""


def check_k(cfg) -> None:
    if not 0 < cfg.k <= cfg.dict_size:
        raise ValueError(f"k must be in [1, dict_size={cfg.dict_size}], got {cfg.k}")


ALL = "*"
"""The one input group of a single-input SAE: each training example is one row, of any modality."""

Batch = Mapping[str, torch.Tensor]
"""One training batch keyed by input group: {ALL: x_BD} for a single-input SAE, {"image": x_BD,
"text": x_BD} (row i of each a matched pair) for a paired one. The trainer normalises each group
with its own statistics and never needs to know which kind of SAE it trains."""

Stats = Mapping[str, tuple[torch.Tensor, float]]
"""Normalisation statistics keyed by input group: x' = (x − mean_D)·scale."""


class TrainingHooks:
    """What the trainer and `TrainConfig` ask of an architecture, so that neither names one: adding
    an architecture is its own file (overriding what differs) plus its line in the registry.

    Everything the trainer hands over is keyed by input group (`groups`): batches (`Batch`),
    normalisation statistics (`Stats`), the initialisation sample."""

    groups: ClassVar[tuple[str, ...]] = (ALL,)
    """The inputs one training example has, each normalised on its own: (ALL,) one row of any
    modality; ("image", "text") a matched pair."""
    fits_encoder_gain: ClassVar[bool] = False
    """Start the encoder at a damped least-squares gain (`models.init.fit_encoder_gain_`): right for
    per-row selections, where the code is linear in the gain (TopK, Matryoshka)."""
    default_normalize: ClassVar[str] = "center_scale"
    """What `--normalize auto` means for this architecture."""

    option_fields: ClassVar[frozenset[str]] = frozenset({"k", "aux_k", "aux_coef"})
    """The architecture-specific `TrainConfig` fields this architecture reads; `mmsae train`
    refuses one given for an architecture that would ignore it."""

    @classmethod
    def uses_k(cls, cfg) -> bool:
        """Whether sparsity comes from `k` (the TopK family) rather than a penalty weight."""
        return True

    @classmethod
    def sparsity_field(cls, opts: Mapping[str, Any]) -> str:
        """The `TrainConfig` field that sets how sparse the codes are (what a Pareto sweep varies),
        given the options chosen (`opts`: field values)."""
        return "k"

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict[str, Any]:
        """This architecture's config fields, from a `TrainConfig`."""
        return {"d_in": d_in, "dict_size": cfg.dict_size, "k": cfg.k, "aux_k": cfg.aux_k, "aux_coef": cfg.aux_coef}

    @classmethod
    def train_checks(cls, cfg) -> list[tuple[bool, str]]:
        """(condition, message) pairs a `TrainConfig` must meet for this architecture."""
        return []

    def training_loss(
        self, xs: Batch, dead_F: torch.Tensor | None = None, step: int = 0, total_steps: int = 1
    ) -> LossOutput:
        """The loss of one normalised batch; `dead_F` marks latents silent for a while (AuxK),
        `step` / `total_steps` drive warm-ups."""
        raise NotImplementedError

    def init_from_sample_(self, xs: Batch, b_dec_init: str) -> None:
        """Data-dependent initialisation from a normalised sample of the training data (after
        `reset_parameters`); `b_dec_init` is "geometric_median", "mean" or "zeros"."""
        raise NotImplementedError

    def fold_input_normalization_(self, stats: Stats) -> None:
        """Make weights trained on normalised inputs act on raw ones."""
        raise NotImplementedError

    calibration_batches: ClassVar[int] = 0
    """Training batches `calibrate_` wants after the last step (0: it is never called)."""

    def calibrate_(self, batches: Iterable[Batch]) -> None:
        """Set, from the final weights, what training could only estimate while the weights moved
        (an inference threshold); `batches` are normalised training batches. Default: nothing."""


def warmed_up(coef: float, warmup_frac: float, step: int, total_steps: int) -> float:
    """A penalty weight ramped linearly from 0 over the first `warmup_frac` of training: the full
    penalty from the first step would silence latents before the decoder has found its directions."""
    return coef * min(1.0, (step + 1) / max(1.0, warmup_frac * total_steps))


def init_bias_(b_dec_D: torch.Tensor, x_ND: torch.Tensor, how: str) -> None:
    """b_dec at the sample's geometric median or mean ("zeros": left as it is)."""
    from mmsae.models.init import geometric_median

    with torch.no_grad():
        if how == "geometric_median":
            b_dec_D.copy_(geometric_median(x_ND[:16384]))
        elif how == "mean":
            b_dec_D.copy_(x_ND.mean(0))


class SparseAutoencoder(TrainingHooks, nn.Module):
    """Base class; see module docstring."""

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    paired: ClassVar[bool] = False
    select_dtype: torch.dtype | None = None
    """Training only: a low precision (torch.bfloat16) for the GEMM that chooses the TopK latents;
    values and gradients stay in full precision. Set by the trainer (`TrainConfig.select_dtype`)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.d_in <= 0 or cfg.dict_size <= 0:
            raise ValueError(f"d_in and dict_size must be positive, got {cfg.d_in}, {cfg.dict_size}")
        self.cfg = cfg
        D, F_ = cfg.d_in, cfg.dict_size
        # [D, F] stored column-major: the sparse backward builds ∂W_enc as [F, D] rows (one per
        # latent), which then lands in .grad as is; a row-major W_enc costs a transposing copy per step
        self.W_enc = nn.Parameter(torch.empty(F_, D).T)
        self.b_enc = nn.Parameter(torch.zeros(F_))
        self.W_dec = nn.Parameter(torch.empty(F_, D))
        self.b_dec = nn.Parameter(torch.zeros(D))
        self.reset_parameters()

    # --- init ------------------------------------------------------------------------------------
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Unit-norm random decoder rows; the encoder starts as the decoder's transpose."""
        with torch.no_grad():
            W = torch.randn(self.cfg.dict_size, self.cfg.d_in, generator=generator)
            self.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)
            self.b_enc.zero_()
            self.b_dec.zero_()

    # --- inference ---------------------------------------------------------------------------------
    def pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        return linear(x_BD - self.b_dec, self.W_enc.T, self.b_enc)

    def activation(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """Inference-time activation; subclasses override."""
        return F.relu(pre_BF)

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_acts(x_BD))

    @torch.no_grad()
    def encode_sparse(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows_N, cols_N, vals_N): the nonzero codes of `encode`, row by row.
        Passes over a whole store want only these; TopK-family SAEs override it so that the [B, F]
        codes are never formed."""
        codes_BF = self.encode(x_BD)
        rows_N, cols_N = codes_BF.nonzero(as_tuple=True)
        return rows_N, cols_N, codes_BF[rows_N, cols_N]

    def decode(self, codes_BF: torch.Tensor) -> torch.Tensor:
        return codes_BF @ self.W_dec + self.b_dec

    def forward(self, x_BD: torch.Tensor) -> SAEOutput:
        codes_BF = self.encode(x_BD)
        return SAEOutput(codes_BF, self.decode(codes_BF))

    def decode_sparse(self, idx_BK: torch.Tensor, val_BK: torch.Tensor) -> torch.Tensor:
        """x̂ from the K active latents of each row, in O(B·K·D) instead of O(B·F·D)."""
        return decode_topk(idx_BK, val_BK, self.W_dec) + self.b_dec

    # --- training ----------------------------------------------------------------------------------
    def init_from_sample_(self, xs: Batch, b_dec_init: str) -> None:
        from mmsae.models.init import fit_encoder_gain_

        x_ND = xs[ALL]
        init_bias_(self.b_dec, x_ND, b_dec_init)
        if self.fits_encoder_gain:
            fit_encoder_gain_(self, x_ND[:8192])

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        """Drop the part of each decoder row's gradient that would only change its norm."""
        remove_parallel_grad_(self.W_dec)

    @torch.no_grad()
    def fold_input_normalization_(self, stats: Stats) -> None:
        """Make weights trained on x' = (x - mean)·scale act on raw x (`stats`: {ALL: (mean, scale)}).

        Codes come out in raw units (divided by `scale`), so the decoder keeps unit-norm rows and
        every activation (ReLU, TopK, thresholds) is unchanged up to that positive factor.
        """
        mean_D, scale = stats[ALL]
        self.b_enc.div_(scale)
        self.b_dec.copy_(mean_D.to(self.b_dec) + self.b_dec / scale)

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        """Buffers saved beside the four weights (e.g. a threshold)."""
        return {}

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Everything `save_sae` writes, by name."""
        return {n: getattr(self, n) for n in ("W_enc", "b_enc", "W_dec", "b_dec")} | self.extra_state_tensors()


@torch.no_grad()
def remove_parallel_grad_(W_FD: torch.Tensor) -> None:
    """grad_f −= (grad_f·w_f / |w_f|²) w_f for each row f, without a normalised copy of W."""
    if W_FD.grad is None:
        return
    G = W_FD.grad
    parallel_F = torch.linalg.vecdot(G, W_FD) / torch.linalg.vecdot(W_FD, W_FD).clamp_min(1e-16)
    G.sub_(parallel_F[:, None] * W_FD)


def recon_loss(x_BD: torch.Tensor, x_hat_BD: torch.Tensor) -> torch.Tensor:
    """Squared error summed over dims, averaged over the batch. As one fused `mse_loss` (sum / B):
    3.5× cheaper forward and backward than the same formula as elementwise ops at B = 4096, D = 512."""
    return F.mse_loss(x_hat_BD, x_BD, reduction="sum") / x_BD[..., 0].numel()


def topk_sparse(pre_BF: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, values) of the k largest ReLU'd pre-activations per row, largest first."""
    val_BK, idx_BK = torch.topk(pre_BF, k, dim=-1, sorted=True)
    return idx_BK, F.relu(val_BK)


def fired_latents(idx: torch.Tensor, val: torch.Tensor, dict_size: int) -> torch.Tensor:
    """Bool [F]: latents with a positive value anywhere in the batch. The values are ReLU'd (≥ 0),
    so a latent fired iff its values sum above zero: one scatter-add, ~40× cheaper than a masked
    index-put at B = 4096, k = 32."""
    total_F = torch.zeros(dict_size, dtype=val.dtype, device=val.device)
    return total_F.scatter_add_(0, idx.reshape(-1), val.detach().reshape(-1)) > 0


def dense_from_sparse(idx_BK: torch.Tensor, val_BK: torch.Tensor, dict_size: int) -> torch.Tensor:
    out = torch.zeros(idx_BK.shape[0], dict_size, dtype=val_BK.dtype, device=val_BK.device)
    return out.scatter_(-1, idx_BK, val_BK)


def auxk_loss(
    W_dec_FD: torch.Tensor,
    pre_BF: torch.Tensor,
    x_BD: torch.Tensor,
    x_hat_BD: torch.Tensor,
    dead_F: torch.Tensor | None,
    aux_k: int,
) -> torch.Tensor:
    """AuxK (Gao et al. 2024): dead latents learn to explain what the live ones miss.

    The residual x - x̂ is a fixed target; the loss is its normalised MSE from the top `aux_k` dead latents.
    """
    if dead_F is None or aux_k <= 0:
        return pre_BF.new_zeros(())
    n_dead = int(dead_F.sum())
    if n_dead == 0:
        return pre_BF.new_zeros(())
    k = min(aux_k, n_dead)
    masked_BF = pre_BF.masked_fill(~dead_F, float("-inf"))
    idx_BK, val_BK = topk_sparse(masked_BF, k)
    return auxk_from_selection(W_dec_FD, idx_BK, val_BK, x_BD, x_hat_BD)


def auxk_from_selection(
    W_dec_FD: torch.Tensor, idx_BA: torch.Tensor, val_BA: torch.Tensor, x_BD: torch.Tensor, x_hat_BD: torch.Tensor
) -> torch.Tensor:
    """The AuxK loss once its dead latents are chosen (an empty selection, the usual case, gives 0
    without computing the residual)."""
    if idx_BA.shape[1] == 0:
        return x_BD.new_zeros(())
    target_BD = (x_BD - x_hat_BD).detach()
    recon_BD = decode_topk(idx_BA, val_BA, W_dec_FD)
    denom = (target_BD - target_BD.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-8)
    return (recon_BD - target_BD).pow(2).sum(dim=-1).mean() / denom
