"""The seed design's MultiModalSAE: per-modality input projections, one shared sparse encoder,
per-modality decoders, and an alignment term on pairs:

    L = L_text + λ_img · L_img + λ_align · mean_n ‖z_txt − z_img‖²   (+ λ_l1 · L1 for sparsity="l1")

What was kept from the seed sketch and why:
- the projections P_m [D_m, D_s] (with bias): modality dims may differ (e.g. a 768-d image tower
  and a 512-d text tower), and each modality may need its own map onto shared concepts (the
  modality gap is an offset between the two cones);
- TopK or L1 sparsity on one shared encoder, so latent j means the same concept on both sides;
- the alignment term, which asks a pair's image and caption to use the same latents with the
  same strengths.
Dropped: the sketch's cross-attention between modalities. It attends over a sequence of length
one, where the softmax weight is always 1, so it reduces to a linear map of the other modality,
which also makes the encoding of an image depend on its caption (unusable on an image alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmsae.models.base import (
    LossOutput,
    SAEConfig,
    auxk_from_selection,
    check_k,
    dense_from_sparse,
    fired_latents,
    recon_loss,
    remove_parallel_grad_,
    topk_sparse,
)
from mmsae.models.kernels.sparse_decode import decode_topk
from mmsae.models.kernels.sparse_encode import topk_encode
from mmsae.models.paired import MODALITIES, PairedSAE, check_modality


@dataclass(frozen=True)
class MultiModalConfig(SAEConfig):
    """Multimodal SAE; `d_in` is the width D_s of the shared space the projections map into."""

    d_image: int = 0
    """Image embedding dimension (0: same as d_in)."""
    d_text: int = 0
    """Text embedding dimension (0: same as d_in)."""
    sparsity: str = "topk"
    """topk (k largest shared pre-activations) or l1 (ReLU + L1 penalty)."""
    k: int = 32
    """Active latents per row, sparsity="topk"."""
    l1_coef: float = 1.0
    """L1 weight λ_l1, sparsity="l1" (on inputs scaled to mean norm √D)."""
    lambda_image: float = 1.0
    """Weight of the image reconstruction loss λ_img (the text loss has weight 1)."""
    lambda_align: float = 0.3
    """Weight of the pair alignment term λ_align ‖z_txt − z_img‖²."""
    aux_k: int = 256
    """Dead latents in the AuxK loss (topk)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""

    def dim(self, modality: str) -> int:
        return (self.d_image if modality == "image" else self.d_text) or self.d_in


class MultiModalSAE(PairedSAE):
    architecture = "multimodal"
    config_class = MultiModalConfig

    @classmethod
    def uses_k(cls, cfg) -> bool:
        return cfg.sparsity != "l1"

    option_fields = frozenset({"k", "aux_k", "aux_coef", "l1_coef", "sparsity", "lambda_align", "lambda_image"})

    @classmethod
    def sparsity_field(cls, opts) -> str:
        return "l1_coef" if opts.get("sparsity") == "l1" else "k"

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict:
        return {
            "d_in": d_in,
            "dict_size": cfg.dict_size,
            "d_image": d_in,
            "d_text": d_in,
            "sparsity": cfg.sparsity,
            "k": cfg.k,
            "l1_coef": cfg.l1_coef,
            "lambda_image": cfg.lambda_image,
            "lambda_align": cfg.lambda_align,
            "aux_k": cfg.aux_k,
            "aux_coef": cfg.aux_coef,
        }

    cfg: MultiModalConfig

    def __init__(self, cfg: MultiModalConfig):
        super().__init__()
        if cfg.d_in <= 0 or cfg.dict_size <= 0:
            raise ValueError(f"d_in and dict_size must be positive, got {cfg.d_in}, {cfg.dict_size}")
        if cfg.sparsity not in ("topk", "l1"):
            raise ValueError(f"sparsity must be topk or l1, got {cfg.sparsity!r}")
        if cfg.sparsity == "topk":
            check_k(cfg)
        self.cfg = cfg
        Ds, F_ = cfg.d_in, cfg.dict_size
        for m in MODALITIES:
            Dm = cfg.dim(m)
            setattr(self, f"P_{m}", nn.Parameter(torch.empty(Dm, Ds)))
            setattr(self, f"p_{m}", nn.Parameter(torch.zeros(Ds)))
            setattr(self, f"W_dec_{m}", nn.Parameter(torch.empty(F_, Dm)))
            setattr(self, f"b_dec_{m}", nn.Parameter(torch.zeros(Dm)))
        self.W_enc = nn.Parameter(torch.empty(Ds, F_))
        self.b_enc = nn.Parameter(torch.zeros(F_))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Projections start as the identity where dims match; decoders as W_encᵀ mapped back."""
        with torch.no_grad():
            Ds, F_ = self.cfg.d_in, self.cfg.dict_size
            W = torch.randn(F_, Ds, generator=generator)
            W = W / W.norm(dim=1, keepdim=True)
            self.W_enc.copy_(W.T)
            self.b_enc.zero_()
            for m in MODALITIES:
                Dm = self.cfg.dim(m)
                P = self._proj(m)
                if Dm == Ds:
                    P.copy_(torch.eye(Ds))
                else:
                    P.copy_(torch.randn(Dm, Ds, generator=generator) / Dm**0.5)
                getattr(self, f"p_{m}").zero_()
                dec = W @ torch.linalg.pinv(P)  # a concept's direction seen through P_m
                getattr(self, f"W_dec_{m}").copy_(dec / dec.norm(dim=1, keepdim=True).clamp_min(1e-8))
                getattr(self, f"b_dec_{m}").zero_()

    def _proj(self, m: str) -> torch.Tensor:
        return getattr(self, f"P_{check_modality(m)}")

    def input_dim(self, modality: str) -> int:
        return self.cfg.dim(modality)

    def pre_acts(self, x_BD: torch.Tensor, modality: str) -> torch.Tensor:
        m = check_modality(modality)
        return self._hidden(x_BD, m) @ self.W_enc + self.b_enc

    def _sparse(self, pre_BF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        if self.cfg.sparsity == "topk":
            return topk_sparse(pre_BF, self.cfg.k)
        return F.relu(pre_BF)

    def encode(self, x_BD: torch.Tensor, modality: str) -> torch.Tensor:
        s = self._sparse(self.pre_acts(x_BD, modality))
        return dense_from_sparse(*s, self.cfg.dict_size) if isinstance(s, tuple) else s

    def decode(self, codes_BF: torch.Tensor, modality: str) -> torch.Tensor:
        m = check_modality(modality)
        return codes_BF @ getattr(self, f"W_dec_{m}") + getattr(self, f"b_dec_{m}")

    def decoder_directions(self, modality: str) -> torch.Tensor:
        return getattr(self, f"W_dec_{check_modality(modality)}")

    def _hidden(self, x_BD: torch.Tensor, m: str) -> torch.Tensor:
        """h = (x − b_dec_m) P_m + p_m, the shared space the encoder reads."""
        return (x_BD - getattr(self, f"b_dec_{m}")) @ self._proj(m) + getattr(self, f"p_{m}")

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        if self.cfg.sparsity == "topk":
            return self._topk_loss(xs, dead_F)
        cfg = self.cfg
        codes, recons, parts = {}, {}, {}
        l1 = xs["image"].new_zeros(())
        for m in MODALITIES:
            x = xs[m]
            W_dec = getattr(self, f"W_dec_{m}")
            z_BF = F.relu(self.pre_acts(x, m))
            x_hat = self.decode(z_BF, m)
            l1 = l1 + (z_BF * W_dec.norm(dim=1)).sum(dim=-1).mean()
            codes[m], recons[m] = z_BF, x_hat
            parts[f"mse_{m}"] = recon_loss(x, x_hat)
        align = (codes["text"] - codes["image"]).pow(2).sum(dim=-1).mean()
        warm = min(1.0, (step + 1) / max(1, int(0.05 * total_steps)))
        loss = (
            parts["mse_text"]
            + cfg.lambda_image * parts["mse_image"]
            + cfg.lambda_align * align
            + warm * cfg.l1_coef * l1
        )
        fired_F = (codes["image"] > 0).any(dim=0) | (codes["text"] > 0).any(dim=0)
        l0 = 0.5 * sum((z > 0).float().sum(dim=-1).mean() for z in codes.values())
        info = {k: v.detach() for k, v in parts.items()} | {"align": align.detach(), "auxk": 0.0, "l1": l1.detach()}
        return LossOutput(loss, recons["image"], fired_F, l0, info, recons)

    def _topk_loss(self, xs, dead_F) -> LossOutput:
        """TopK sparsity without a [B, F] tensor: the shared encoder's sparse TopK (its backward
        touches only the chosen latents, AuxK included), sparse decoding, and the alignment term
        ‖z_text − z_image‖² from the two rows' chosen latents (matched by a binary search, O(B·k log k))."""
        cfg = self.cfg
        sel, recons, parts = {}, {}, {}
        fired_F = torch.zeros(cfg.dict_size, dtype=torch.bool, device=xs["image"].device)
        aux = xs["image"].new_zeros(())
        zero_S = self.W_enc.new_zeros(self.W_enc.shape[0])
        for m in MODALITIES:
            x = xs[m]
            W_dec = getattr(self, f"W_dec_{m}")
            idx_BK, val_BK, aidx, aval = topk_encode(
                self._hidden(x, m), self.W_enc, self.b_enc, zero_S, cfg.k, dead_F, cfg.aux_k
            )
            x_hat = decode_topk(idx_BK, val_BK, W_dec) + getattr(self, f"b_dec_{m}")
            aux = aux + auxk_from_selection(W_dec, aidx, aval, x, x_hat)
            sel[m], recons[m] = (idx_BK, val_BK), x_hat
            parts[f"mse_{m}"] = recon_loss(x, x_hat)
            fired_F |= fired_latents(idx_BK, val_BK, cfg.dict_size)
        (ti, tv), (ii, iv) = sel["text"], sel["image"]
        ii_sorted, order = ii.sort(dim=1)  # each text latent found among the image row's by binary search
        at = torch.searchsorted(ii_sorted, ti).clamp_max(ii.shape[1] - 1)
        same = ii_sorted.gather(1, at) == ti
        cross_B = (tv * iv.gather(1, order).gather(1, at) * same).sum(dim=1)
        align = (tv.pow(2).sum(-1) + iv.pow(2).sum(-1) - 2 * cross_B).mean()
        loss = parts["mse_text"] + cfg.lambda_image * parts["mse_image"] + cfg.lambda_align * align + cfg.aux_coef * aux
        l0 = 0.5 * sum((v > 0).float().sum(dim=-1).mean() for _, v in sel.values())
        info = {k: v.detach() for k, v in parts.items()} | {"align": align.detach(), "auxk": aux.detach(), "l1": 0.0}
        return LossOutput(loss, recons["image"], fired_F, l0, info, recons)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        for m in MODALITIES:
            W = getattr(self, f"W_dec_{m}")
            W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        for m in MODALITIES:
            remove_parallel_grad_(getattr(self, f"W_dec_{m}"))

    @torch.no_grad()
    def fold_input_normalization_(self, stats) -> None:
        """x' = (x − μ)s: the encoder reads x through b_dec and P, so scaling P by s and mapping b_dec
        back to raw units (b/s + μ) gives the same codes; the decoder's output is divided by s."""
        for m, (mean_D, scale) in stats.items():
            mean_D = mean_D.to(self.W_enc)
            self._proj(m).mul_(scale)
            getattr(self, f"W_dec_{m}").div_(scale)
            b = getattr(self, f"b_dec_{m}")
            b.copy_(b / scale + mean_D)
