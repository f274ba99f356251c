"""Load SAELens folders (`cfg.json` + `sae_weights.safetensors`) into mmsae classes.

Covered: `standard` (→ relu), `topk` (→ topk), `jumprelu` (→ batchtopk with per-latent
thresholds: SAELens saves BatchTopK SAEs as JumpReLU for inference). Their options are folded
into the four weights: `apply_b_dec_to_input=False` moves b_dec·W_enc into b_enc, and
`rescale_acts_by_decoder_norm` scales the encoder by the decoder row norms.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.batchtopk import BatchTopKConfig, BatchTopKSAE
from mmsae.models.relu import ReLUConfig, ReLUSAE
from mmsae.models.topk import TopKConfig, TopKSAE


def load_saelens(folder: str | Path) -> SparseAutoencoder:
    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    arch = cfg.get("architecture", "standard")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise SAELoadError(f"{folder}: SAELens normalize_activations={norm!r} is not supported (only 'none')")
    try:
        t = load_file(str(folder / "sae_weights.safetensors"))
    except FileNotFoundError:
        raise SAELoadError(f"{folder}: missing sae_weights.safetensors") from None
    W_enc, b_enc, W_dec, b_dec = (t[n].float() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    d_in, d_sae = W_enc.shape
    if not cfg.get("apply_b_dec_to_input", True):
        # act(x W + b) == act((x - b_dec) W + (b + b_dec W))
        b_enc = b_enc + b_dec @ W_enc
    threshold = t.get("threshold")
    if arch == "standard":
        sae: SparseAutoencoder = ReLUSAE(ReLUConfig(d_in=d_in, dict_size=d_sae))
    elif arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm", False):
            # topk(pre · ‖d‖), decoded as (z / ‖d‖) W_dec: fold the norms into both sides
            norms = W_dec.norm(dim=1)
            W_enc, b_enc = W_enc * norms, b_enc * norms
            W_dec = W_dec / norms[:, None]
        sae = TopKSAE(TopKConfig(d_in=d_in, dict_size=d_sae, k=int(cfg["k"])))
    elif arch == "jumprelu":
        if threshold is None:
            raise SAELoadError(f"{folder}: jumprelu SAE without a threshold tensor")
        sae = BatchTopKSAE(BatchTopKConfig(d_in=d_in, dict_size=d_sae, k=max(1, int(cfg.get("k", 1) or 1))))
    else:
        raise SAELoadError(f"{folder}: SAELens architecture {arch!r} is not supported (standard, topk, jumprelu)")
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_dec.copy_(b_dec)
        if arch == "jumprelu":
            sae.threshold.copy_(threshold.float())
    sae.provenance = {"format": "saelens", "source": str(folder), "saelens_architecture": arch}
    return sae.eval()
