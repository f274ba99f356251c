"""Saving and loading SAE folders: `config.json` + `model.safetensors`.

The saved weights act on raw embeddings (training normalisation already folded in), so anyone
can use them with four lines of numpy. SAELens folders (`cfg.json` + `sae_weights.safetensors`)
load too, for the architectures both libraries have.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mmsae.errors import SAELoadError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.models.base import SparseAutoencoder
from mmsae.models.paired import PairedSAE
from mmsae.models.registry import ARCHITECTURES

SAE_SCHEMA_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_sae(
    sae: SparseAutoencoder | PairedSAE, folder: str | os.PathLike, provenance: dict[str, Any] | None = None
) -> Path:
    """Write `model.safetensors` then `config.json`, each atomically; other files in the folder stay.

    `config.json` goes last, so a folder that has one always has the matching weights.
    """
    from mmsae.version import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.named_tensors().items()}
    config = {
        "schema_version": SAE_SCHEMA_VERSION,
        "architecture": sae.architecture,
        **sae.cfg.to_dict(),
        "mmsae_version": __version__,
        "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance or {},
    }
    (folder / CONFIG_NAME).unlink(missing_ok=True)
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(folder / CONFIG_NAME, config)
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SAELoadError(f"{folder} is not an SAE folder (no {CONFIG_NAME} or SAELens cfg.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SAELoadError(f"{path} is damaged: {exc}") from None


def load_sae(folder: str | os.PathLike, device: str | torch.device = "cpu") -> SparseAutoencoder | PairedSAE:
    """Load an mmsae SAE folder, or a SAELens one; a Hugging Face hub id (`user/repo/subfolder`)
    that is not a local path is fetched first (`mmsae.models.hub`: the local cache, then the hub)."""
    from mmsae.models.hub import resolve_sae_path

    folder = resolve_sae_path(folder)
    if not folder.is_dir():
        raise SAELoadError(f"{folder}: no such SAE folder")
    from mmsae.models.formats import load_foreign  # sparsify, saev, dictionary_learning, overcomplete

    if (foreign := load_foreign(folder)) is not None:
        return foreign.to(device)
    if not (folder / CONFIG_NAME).exists() and (folder / "cfg.json").exists():
        from mmsae.models.saelens import load_saelens

        return load_saelens(folder).to(device)
    config = read_config(folder)
    if not isinstance(config, dict) or not isinstance(config.get("schema_version", 0), int):
        raise SAELoadError(f"{folder}/{CONFIG_NAME} is damaged: not an SAE config object")
    if int(config.get("schema_version", 0)) > SAE_SCHEMA_VERSION:
        raise SAELoadError(f"{folder} was saved by a newer mmsae (schema {config['schema_version']}); upgrade mmsae")
    arch = config.get("architecture")
    if arch not in ARCHITECTURES:
        raise SAELoadError(f"{folder}: unknown architecture {arch!r} (known: {sorted(ARCHITECTURES)})")
    cls = ARCHITECTURES[arch]
    try:
        sae = cls(cls.config_class.from_dict(config))
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise SAELoadError(f"{folder}/{CONFIG_NAME} is damaged: {' '.join(str(exc).split())[:200]}") from None
    try:
        tensors = load_file(str(folder / WEIGHTS_NAME))
    except FileNotFoundError:
        raise SAELoadError(f"{folder}: missing {WEIGHTS_NAME}") from None
    except Exception as exc:  # safetensors raises its own error type for truncated files
        raise SAELoadError(f"{folder}/{WEIGHTS_NAME} is damaged: {exc}") from None
    load_tensors_(sae, tensors, str(folder))
    sae.provenance = config.get("provenance", {})
    return sae.to(device).eval()


def load_tensors_(sae: SparseAutoencoder | PairedSAE, tensors: dict[str, torch.Tensor], where: str) -> None:
    for name, target in sae.named_tensors().items():
        if name not in tensors:
            raise SAELoadError(f"{where}: tensor {name!r} missing")
        if tuple(tensors[name].shape) != tuple(target.shape):
            raise SAELoadError(
                f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, config implies {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.copy_(tensors[name].float())
