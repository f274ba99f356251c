"""VL-SAE (Shen et al., NeurIPS 2025), as in its official code: one distance-based encoder shared
by images and texts, and one decoder (with bias) per modality.

The encoder has no bias. Input and atoms are L2-normalised and a latent's activation is

    a_j = 2 − ‖x̂ − ŵ_j‖₂ = 2 − √(2 − 2 cos(x, w_j)),

then only the k largest are kept. Because the activation depends on direction only, an image and
its caption that point at the same atom fire the same latent regardless of the modality gap in
norm; the per-modality decoders absorb the gap. Loss: MSE(v̂, v) + MSE(t̂, t) on pairs, no
sparsity term (the official code's per-element MSE times D here: same optimum).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmsae.models.base import LossOutput, SAEConfig, check_k, dense_from_sparse, fired_latents, recon_loss, topk_sparse
from mmsae.models.kernels.sparse_decode import decode_topk
from mmsae.models.kernels.sparse_encode import topk_encode
from mmsae.models.paired import MODALITIES, PairedSAE, check_modality


@dataclass(frozen=True)
class VLSAEConfig(SAEConfig):
    """VL-SAE; `d_in` is the shared embedding dimension of images and texts."""

    k: int = 32
    """Active latents per row (the released checkpoints use 256 with F = 8D)."""
    center: bool = False
    """Not in the official code: subtract each modality's mean embedding before L2-normalising, so
    the modality gap (an offset between the image and text cones) does not compete with concepts
    in the cosine. Means are estimated at the start of training and saved as mean_image/mean_text."""


class VLSAE(PairedSAE):
    architecture = "vlsae"
    config_class = VLSAEConfig
    default_normalize = "none"  # it L2-normalises its input itself

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict:
        return {"d_in": d_in, "dict_size": cfg.dict_size, "k": cfg.k, "center": cfg.vlsae_center}

    option_fields = frozenset({"k", "vlsae_center"})

    @classmethod
    def train_checks(cls, cfg) -> list[tuple[bool, str]]:
        return [
            (
                cfg.normalize != "center_scale",
                "vlsae L2-normalises its input itself, so centring cannot be folded "
                "into it; use --normalize auto, scale or none",
            )
        ]

    cfg: VLSAEConfig

    def __init__(self, cfg: VLSAEConfig):
        super().__init__()
        if cfg.d_in <= 0 or cfg.dict_size <= 0:
            raise ValueError(f"d_in and dict_size must be positive, got {cfg.d_in}, {cfg.dict_size}")
        check_k(cfg)
        self.cfg = cfg
        D, F_ = cfg.d_in, cfg.dict_size
        self.W_enc = nn.Parameter(torch.empty(D, F_))
        self.W_dec_image = nn.Parameter(torch.empty(F_, D))
        self.W_dec_text = nn.Parameter(torch.empty(F_, D))
        self.b_dec_image = nn.Parameter(torch.zeros(D))
        self.b_dec_text = nn.Parameter(torch.zeros(D))
        if cfg.center:
            self.register_buffer("mean_image", torch.zeros(D))
            self.register_buffer("mean_text", torch.zeros(D))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random unit atoms; both decoders start as the atoms scaled like a linear layer's init."""
        with torch.no_grad():
            W = torch.randn(self.cfg.d_in, self.cfg.dict_size, generator=generator)
            self.W_enc.copy_(W / W.norm(dim=0, keepdim=True))
            dec = self.W_enc.T / self.cfg.dict_size**0.5
            self.W_dec_image.copy_(dec)
            self.W_dec_text.copy_(dec)
            self.b_dec_image.zero_()
            self.b_dec_text.zero_()

    def input_dim(self, modality: str) -> int:
        return self.cfg.d_in

    def pre_acts(self, x_BD: torch.Tensor, modality: str) -> torch.Tensor:
        if self.cfg.center:
            x_BD = x_BD - getattr(self, f"mean_{check_modality(modality)}")
        cos_BF = F.normalize(x_BD, dim=-1) @ F.normalize(self.W_enc, dim=0)
        return 2.0 - torch.sqrt((2.0 - 2.0 * cos_BF).clamp_min(1e-12))

    def encode(self, x_BD: torch.Tensor, modality: str) -> torch.Tensor:
        idx_BK, val_BK = topk_sparse(self.pre_acts(x_BD, modality), self.cfg.k)
        return dense_from_sparse(idx_BK, val_BK, self.cfg.dict_size)

    def _dec(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        m = check_modality(modality)
        return getattr(self, f"W_dec_{m}"), getattr(self, f"b_dec_{m}")

    def decode(self, codes_BF: torch.Tensor, modality: str) -> torch.Tensor:
        W, b = self._dec(modality)
        return codes_BF @ W + b

    def decode_sparse(self, idx_BK, val_BK, modality: str) -> torch.Tensor:
        W, b = self._dec(modality)
        return decode_topk(idx_BK, val_BK, W) + b

    def decoder_directions(self, modality: str) -> torch.Tensor:
        return self._dec(modality)[0]

    def _select(self, x_BD: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The k largest activations of each row, as `topk_sparse(pre_acts)`, with a backward that
        touches only them: the activation rises with the cosine, so the cosines (shifted by 2 to
        stay positive through the sparse encoder's ReLU) choose the latents and only the chosen
        ones go through the distance."""
        if self.cfg.center:
            x_BD = x_BD - getattr(self, f"mean_{check_modality(modality)}")
        D, F_ = self.W_enc.shape
        shift_F, zero_D = x_BD.new_full((F_,), 2.0), x_BD.new_zeros(D)
        xn_BD, Wn_DF = F.normalize(x_BD, dim=-1), F.normalize(self.W_enc, dim=0)
        idx_BK, cos2_BK, _, _ = topk_encode(xn_BD, Wn_DF, shift_F, zero_D, self.cfg.k)
        return idx_BK, 2.0 - torch.sqrt((6.0 - 2.0 * cos2_BK).clamp_min(1e-12))

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        fired_F = torch.zeros(self.cfg.dict_size, dtype=torch.bool, device=xs["image"].device)
        outs, parts = [], {}
        for m in MODALITIES:
            x = xs[m]
            idx_BK, val_BK = self._select(x, m)
            x_hat = self.decode_sparse(idx_BK, val_BK, m)
            parts[f"mse_{m}"] = recon_loss(x, x_hat)
            fired_F |= fired_latents(idx_BK, val_BK, self.cfg.dict_size)
            outs.append(x_hat)
        loss = parts["mse_image"] + parts["mse_text"]
        l0 = torch.tensor(float(self.cfg.k))
        return LossOutput(
            loss, outs[0], fired_F, l0, {k: v.detach() for k, v in parts.items()}, {"image": outs[0], "text": outs[1]}
        )

    @torch.no_grad()
    def init_from_sample_(self, xs, b_dec_init: str) -> None:
        """Also the per-modality means `center=True` subtracts (in the units the model trains in)."""
        super().init_from_sample_(xs, b_dec_init)
        if self.cfg.center:
            for m, x_ND in xs.items():
                getattr(self, f"mean_{check_modality(m)}").copy_(x_ND.mean(0))

    @torch.no_grad()
    def fold_input_normalization_(self, stats) -> None:
        """The encoder sees only directions, so only a pure rescaling (no centring) can be folded:
        the decoder learned x·s, so divide it by s (and the centring means likewise)."""
        for m, (mean_D, scale) in stats.items():
            if float(mean_D.abs().max()) > 0:
                raise ValueError("VL-SAE normalises its input itself; centring cannot be folded into it")
            W, b = self._dec(m)
            W.div_(scale)
            b.div_(scale)
            if self.cfg.center:
                getattr(self, f"mean_{m}").div_(scale)
