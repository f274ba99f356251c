"""SAELens folders (`cfg.json` + `sae_weights.safetensors`): load them into mmsae classes, and
export mmsae SAEs to them.

Loading covers `standard` (→ relu), `topk` (→ topk), `jumprelu` (→ jumprelu, `log_threshold` =
log(threshold)) and `gated` (→ gated). Their options are folded into the weights:
`apply_b_dec_to_input=False` moves b_dec·W_enc into the encoder biases, and
`rescale_acts_by_decoder_norm` scales the encoder by the decoder row norms.

Exporting writes the same two files without importing sae_lens, so that `SAE.load_from_disk(DIR)`
encodes and decodes exactly as mmsae does: relu → `standard`, topk → `topk`, matryoshka → `topk` at
the k its `encode` uses (the nested ks only shaped training), batchtopk → `jumprelu` with its
inference threshold per latent, jumprelu → `jumprelu`, gated → `gated`. The mmsae architecture and
config travel in `metadata`, so an exported folder loads back into the class it came from. Paired
SAEs (vlsae, multimodal) have a decoder per modality and no SAELens counterpart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mmsae.errors import MmsaeError, SAELoadError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.models.base import SparseAutoencoder
from mmsae.models.batchtopk import BatchTopKSAE
from mmsae.models.gated import GatedConfig, GatedSAE
from mmsae.models.jumprelu import JumpReLUConfig, JumpReLUSAE
from mmsae.models.registry import ARCHITECTURES
from mmsae.models.relu import ReLUConfig, ReLUSAE
from mmsae.models.topk import TopKConfig, TopKSAE

SAELENS_CONFIG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""The SAELens release whose `cfg.json` layout the exporter writes (`metadata.sae_lens_version`):
SAELens reads a config claiming an older version through its pre-6 converter, which keeps only its
own metadata keys and would drop the mmsae architecture and config that let a folder load back."""

SAELENS_ARCHITECTURES = {
    "relu": "standard",
    "topk": "topk",
    "matryoshka": "topk",
    "batchtopk": "jumprelu",
    "jumprelu": "jumprelu",
    "gated": "gated",
}
"""The SAELens architecture each single mmsae architecture is exported as (same codes, same x̂)."""

EXPORT_NOTES = {
    "matryoshka": "exported as a SAELens TopK SAE at k={k}, the k its encode uses; the nested ks only shaped training",
    "batchtopk": "exported as a SAELens JumpReLU SAE with the inference threshold per latent (BatchTopK's "
    "batch-wide selection is a training-time rule)",
}
"""What changes in name only when an architecture is exported as another (formatted with the config)."""

_TENSORS = {
    "standard": ("W_enc", "b_enc", "W_dec", "b_dec"),
    "topk": ("W_enc", "b_enc", "W_dec", "b_dec"),
    "jumprelu": ("W_enc", "b_enc", "W_dec", "b_dec"),
    "gated": ("W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"),
}
"""The tensors each SAELens architecture needs (jumprelu also a `threshold` or `log_threshold`)."""

_SMALLEST_THRESHOLD = torch.finfo(torch.float32).tiny
"""A SAELens JumpReLU computes ReLU(π)·H(π − θ), so θ ≤ 0 means "fire when π > 0"; mmsae's keeps
θ = exp(log θ) > 0 and computes π·H(π − θ). θ ≤ 0 becomes the smallest normal float32 (1.2e-38):
the two differ only for 0 < π ≤ 1.2e-38, whose contribution to x̂ is below float32's resolution."""


# --- loading ---------------------------------------------------------------------------------------


def _read_saelens_config(folder: Path) -> dict[str, Any]:
    path = folder / SAELENS_CONFIG
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise SAELoadError(f"{folder} is not an SAE folder (no config.json or SAELens {SAELENS_CONFIG})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SAELoadError(f"{path} is damaged: {exc}") from None
    if not isinstance(cfg, dict):
        raise SAELoadError(f"{path} is damaged: not a SAELens config object")
    return cfg


def _read_saelens_weights(folder: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(folder / SAELENS_WEIGHTS))
    except FileNotFoundError:
        raise SAELoadError(f"{folder}: missing {SAELENS_WEIGHTS}") from None
    except Exception as exc:  # safetensors raises its own error type for truncated files
        raise SAELoadError(f"{folder}/{SAELENS_WEIGHTS} is damaged: {exc}") from None


def _checked_tensors(folder: Path, arch: str, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The architecture's tensors as float32, with their shapes checked against one another: a
    mismatch would otherwise surface as a broadcasting error deep inside `encode`."""
    names = _TENSORS[arch]
    missing = [n for n in names if n not in t]
    if arch == "jumprelu" and "threshold" not in t and "log_threshold" not in t:
        missing.append("threshold")
    if missing:
        raise SAELoadError(f"{folder}/{SAELENS_WEIGHTS}: SAELens {arch} SAE without tensor(s) {', '.join(missing)}")
    out = {n: t[n].float() for n in names}
    if arch == "jumprelu":
        out["threshold"] = t["threshold"].float() if "threshold" in t else t["log_threshold"].float().exp()
    W_enc = out["W_enc"]
    if W_enc.ndim != 2:
        raise SAELoadError(f"{folder}/{SAELENS_WEIGHTS}: W_enc has shape {tuple(W_enc.shape)}, expected [d_in, d_sae]")
    D, F_ = W_enc.shape
    want = {n: (F_,) for n in out} | {"W_enc": (D, F_), "W_dec": (F_, D), "b_dec": (D,)}
    for n, tensor in out.items():
        if tuple(tensor.shape) != want[n]:
            raise SAELoadError(
                f"{folder}/{SAELENS_WEIGHTS}: {n} has shape {tuple(tensor.shape)}, W_enc {tuple(W_enc.shape)} implies {want[n]}"
            )
    return out


def _restored(cfg: dict[str, Any], arch: str, d_in: int, d_sae: int) -> SparseAutoencoder | None:
    """The mmsae SAE an exported folder came from (its `metadata` names it), or None for any other
    SAELens folder, or when the metadata does not fit the weights (the folder was edited since)."""
    meta = cfg.get("metadata")
    if not isinstance(meta, dict):
        return None
    name, config = meta.get("mmsae_architecture"), meta.get("mmsae_config")
    if SAELENS_ARCHITECTURES.get(name) != arch or not isinstance(config, dict):
        return None
    config = {**config, "d_in": d_in, "dict_size": d_sae}
    if arch == "topk":
        config["k"] = cfg.get("k")  # what SAELens encodes with, should the two disagree
    cls = ARCHITECTURES[name]
    try:
        return cls(cls.config_class.from_dict(config))
    except (TypeError, ValueError, KeyError, OverflowError):
        return None


def load_saelens(folder: str | os.PathLike) -> SparseAutoencoder:
    """A SAELens folder as an mmsae SAE whose `encode` and `decode` equal SAELens's; a folder that
    `export_saelens` wrote comes back as the architecture and config it was exported from."""
    folder = Path(folder)
    cfg = _read_saelens_config(folder)
    arch = cfg.get("architecture", "standard")
    if arch not in _TENSORS:
        raise SAELoadError(f"{folder}: SAELens architecture {arch!r} is not supported ({', '.join(_TENSORS)})")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise SAELoadError(f"{folder}: SAELens normalize_activations={norm!r} is not supported (only 'none')")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise SAELoadError(
            f"{folder}: SAELens reshape_activations={cfg['reshape_activations']!r} is not supported (only 'none')"
        )
    w = _checked_tensors(folder, arch, _read_saelens_weights(folder))
    W_enc, W_dec, b_dec = w["W_enc"], w["W_dec"], w["b_dec"]
    d_in, d_sae = W_enc.shape
    b_enc = w["b_gate"] if arch == "gated" else w["b_enc"]
    b_mag = w.get("b_mag")
    if not cfg.get("apply_b_dec_to_input", True):
        # act(x W + b) == act((x - b_dec) W + (b + b_dec W)); the gated magnitude path uses W·exp(r_mag)
        shift_F = b_dec @ W_enc
        b_enc = b_enc + shift_F
        if b_mag is not None:
            b_mag = b_mag + shift_F * w["r_mag"].exp()
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        # topk(π · ‖d‖), decoded as (z / ‖d‖) W_dec: fold the norms into both sides
        norms_F = W_dec.norm(dim=1)
        W_enc, b_enc = W_enc * norms_F, b_enc * norms_F
        W_dec = W_dec / norms_F[:, None]
    if arch == "jumprelu" and torch.isnan(w["threshold"]).any():
        raise SAELoadError(f"{folder}/{SAELENS_WEIGHTS}: threshold holds NaN")
    sae = _restored(cfg, arch, d_in, d_sae)
    if sae is None:
        if arch == "standard":
            sae = ReLUSAE(ReLUConfig(d_in=d_in, dict_size=d_sae))
        elif arch == "topk":
            k = cfg.get("k")
            if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= d_sae:
                raise SAELoadError(f"{folder}/{SAELENS_CONFIG}: topk SAE needs k in [1, d_sae={d_sae}], got {k!r}")
            sae = TopKSAE(TopKConfig(d_in=d_in, dict_size=d_sae, k=k))
        elif arch == "jumprelu":
            sae = JumpReLUSAE(JumpReLUConfig(d_in=d_in, dict_size=d_sae))
        else:
            sae = GatedSAE(GatedConfig(d_in=d_in, dict_size=d_sae))
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_dec.copy_(b_dec)
        if isinstance(sae, BatchTopKSAE):
            sae.threshold.copy_(w["threshold"])
        elif isinstance(sae, JumpReLUSAE):
            sae.log_threshold.copy_(w["threshold"].double().clamp_min(_SMALLEST_THRESHOLD).log())
        elif isinstance(sae, GatedSAE):
            sae.r_mag.copy_(w["r_mag"])
            sae.b_mag.copy_(b_mag)
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    before = meta.get("mmsae_provenance") if meta.get("mmsae_architecture") == sae.architecture else None
    sae.provenance = {
        **(before if isinstance(before, dict) else {}),
        "format": "saelens",
        "source": str(folder),
        "saelens_architecture": arch,
    }
    return sae.eval()


# --- exporting -------------------------------------------------------------------------------------


def saelens_architecture(sae) -> str:
    """The SAELens architecture `sae` exports as, or a one-line error saying why it has none."""
    if getattr(sae, "paired", False):
        raise MmsaeError(
            f"a {sae.architecture} SAE cannot be exported to SAELens: a SAELens SAE is one encoder and one "
            f"decoder for one input, and a {sae.architecture} SAE has a decoder per modality (image, text)"
            + (
                " behind a distance-based encoder on L2-normalised inputs"
                if sae.architecture == "vlsae"
                else " and an input projection per modality"
            )
            + "; export it with --format hub instead"
        )
    if sae.architecture not in SAELENS_ARCHITECTURES:
        raise MmsaeError(
            f"a {sae.architecture} SAE has no SAELens counterpart (exportable: {', '.join(SAELENS_ARCHITECTURES)})"
        )
    return SAELENS_ARCHITECTURES[sae.architecture]


def export_note(sae) -> str | None:
    """What the export changes in name (matryoshka → topk, batchtopk → jumprelu), or None."""
    note = EXPORT_NOTES.get(sae.architecture)
    return note.format(**sae.cfg.to_dict()) if note else None


def saelens_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """The SAELens state dict that encodes and decodes as `sae` does (float32, on the CPU)."""
    arch = saelens_architecture(sae)
    t = {
        "W_enc": sae.W_enc,
        ("b_gate" if arch == "gated" else "b_enc"): sae.b_enc,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
    }
    if arch == "jumprelu":
        # mmsae's π·H(π − θ) (θ > 0; BatchTopK also ·H(π)) is SAELens's ReLU(π)·H(π − θ)
        t["threshold"] = sae.threshold
    if arch == "gated":
        t["r_mag"], t["b_mag"] = sae.r_mag, sae.b_mag
    return {n: v.detach().float().cpu().contiguous() for n, v in t.items()}


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """`cfg.json` as SAELens 6 writes it: weights on raw inputs (mmsae folds its normalisation in),
    b_dec subtracted from the input, no activation normalisation, no decoder-norm rescaling."""
    from mmsae.version import __version__

    arch = saelens_architecture(sae)
    provenance = getattr(sae, "provenance", None) or {}
    metadata: dict[str, Any] = {
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        "sae_lens_training_version": None,
        "mmsae_version": __version__,
        "mmsae_architecture": sae.architecture,
        "mmsae_config": sae.cfg.to_dict(),
        "mmsae_provenance": provenance,
    }
    if isinstance(provenance.get("store_model_id"), str):
        metadata["model_name"] = provenance["store_model_id"]
    if isinstance(provenance.get("store"), str):
        metadata["dataset_path"] = provenance["store"]
    note = export_note(sae)
    if note:
        metadata["mmsae_note"] = note
    cfg: dict[str, Any] = {
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.dict_size,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    }
    if arch == "topk":
        cfg |= {"k": int(sae.cfg.k), "rescale_acts_by_decoder_norm": False}
    cfg["architecture"] = arch
    return cfg


def export_saelens(sae: SparseAutoencoder, out_dir: str | os.PathLike) -> Path:
    """Write `sae` as a SAELens folder (`cfg.json` + `sae_weights.safetensors`) that
    `sae_lens.SAE.load_from_disk` loads with the same codes and reconstructions. The weights go
    first and the config last, each atomically, so a folder with a config has its weights."""
    tensors = saelens_tensors(sae)  # refuses paired SAEs before anything is written
    cfg = saelens_config(sae)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SAELENS_CONFIG).unlink(missing_ok=True)
    atomic_write(out / SAELENS_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(out / SAELENS_CONFIG, cfg)
    return out
