"""Matryoshka SAE, MSAE style (Zaigrajew et al., ICML 2025): nested TopK masks on one encoder.

The same pre-activations are cut at k_1 < k_2 < … and each cut must reconstruct the input, so
the largest activations carry the coarse concepts and later ones refine them; at inference any
k up to the largest trained one can be used.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmsae.models.base import ALL, LossOutput, auxk_from_selection, fired_latents, recon_loss
from mmsae.models.kernels.sparse_encode import topk_encode
from mmsae.models.topk import TopKConfig, TopKSAE


def default_ks(k: int) -> tuple[int, ...]:
    """k/4, k/2, k, never below 4 (deduplicated).

    A nested k far below the number of concepts a row really holds forces latents to blend
    concepts; on planted data (6 active concepts, k=8) (1, 2, 4, 8) recovered 56% of them, (4, 8) all.
    """
    return tuple(sorted({min(k, max(4, k // 4)), min(k, max(4, k // 2)), k}))


@dataclass(frozen=True)
class MatryoshkaConfig(TopKConfig):
    """Matryoshka (nested TopK) SAE; `k` is the active latents per row at inference."""

    ks: tuple[int, ...] = ()
    """Nested k values trained together (ascending); empty means k/4, k/2, k, none below 4."""
    weights: tuple[float, ...] = ()
    """Weight of each k's reconstruction loss; empty means equal weights."""

    def nested_ks(self) -> tuple[int, ...]:
        return tuple(self.ks) if self.ks else default_ks(self.k)


class MatryoshkaSAE(TopKSAE):
    """A TopK SAE at inference; only its training loss differs."""

    architecture = "matryoshka"
    config_class = MatryoshkaConfig

    @classmethod
    def train_model_config(cls, cfg, d_in: int) -> dict:
        return {**super().train_model_config(cfg, d_in), "ks": tuple(cfg.matryoshka_ks)}

    option_fields = TopKSAE.option_fields | {"matryoshka_ks"}

    @classmethod
    def train_checks(cls, cfg) -> list[tuple[bool, str]]:
        ks = list(cfg.matryoshka_ks)
        return [
            (
                all(0 < m <= cfg.dict_size for m in ks) and ks == sorted(set(ks)),
                f"matryoshka ks must rise strictly, each in [1, dict size {cfg.dict_size}], got {ks}",
            )
        ]

    cfg: MatryoshkaConfig

    def __init__(self, cfg: MatryoshkaConfig):
        ks = cfg.nested_ks()
        if list(ks) != sorted(set(ks)) or ks[0] < 1 or ks[-1] > cfg.dict_size:
            raise ValueError(f"ks must be strictly ascending within [1, {cfg.dict_size}], got {ks}")
        if cfg.weights and len(cfg.weights) != len(ks):
            raise ValueError(f"{len(cfg.weights)} weights for {len(ks)} ks")
        super().__init__(cfg)

    def training_loss(self, xs, dead_F=None, step=0, total_steps=1) -> LossOutput:
        x_BD = xs[ALL]
        ks = self.cfg.nested_ks()
        weights = self.cfg.weights or (1.0,) * len(ks)
        # sorted, largest first: every prefix is a smaller TopK; sparse backward as in TopKSAE
        idx_BK, val_BK, aux_idx, aux_val = topk_encode(
            x_BD, self.W_enc, self.b_enc, self.b_dec, ks[-1], dead_F, self.cfg.aux_k, self.select_dtype
        )
        total = x_BD.new_zeros(())
        parts: dict[str, float] = {}
        x_hat_BD = None
        for k, w in zip(ks, weights):
            x_hat_BD = self.decode_sparse(idx_BK[:, :k], val_BK[:, :k])
            mse = recon_loss(x_BD, x_hat_BD)
            total = total + w * mse
            parts[f"mse_k{k}"] = mse.detach()
        loss = total / sum(weights)
        aux = auxk_from_selection(self.W_dec, aux_idx, aux_val, x_BD, x_hat_BD)
        fired_F = fired_latents(idx_BK, val_BK, self.cfg.dict_size)
        l0 = (val_BK > 0).float().sum(dim=-1).mean()
        parts["mse"] = parts[f"mse_k{ks[-1]}"]
        parts["auxk"] = aux.detach()
        return LossOutput(loss + self.cfg.aux_coef * aux, x_hat_BD, fired_F, l0, parts)
