"""Other libraries' SAEs, loaded into mmsae classes wherever an SAE folder is accepted.

One module per library, each citing the file of that library that defines its layout:
`sparsify` (EleutherAI), `saev` (OSU-NLP-Group), `dictionary_learning` (saprmarks),
`overcomplete` (KempnerInstitute). Each maps its layout onto mmsae's four weights
(`z = act((x − b_dec) W_enc + b_enc)`, `x̂ = z W_dec + b_dec`) plus the activation's extras, so
that `encode` gives the codes the library's own encode gives and `decode` its reconstruction.
None of them imports the library: the files are read as tensors (safetensors, or `torch.load`
with `weights_only=True`), or, for a pickled module, by a restricted unpickler that runs nothing.

`load_foreign` is the one entry point: `load_sae` calls it for every folder, and it answers None
for mmsae and SAELens folders (left to `load_sae`), an SAE for a foreign one, and one line naming
what it found and what is accepted for a folder that is none of them.
"""

from __future__ import annotations

from pathlib import Path

from mmsae.errors import SAELoadError
from mmsae.models.base import SparseAutoencoder
from mmsae.models.formats import dictionary_learning, overcomplete, saev, sparsify

FORMATS = (sparsify, saev, dictionary_learning, overcomplete)
"""Tried in this order; a folder is the first format whose `detect` says so. overcomplete's
(exactly one *.pt / *.pth file) comes last, because `ae.pt` and `sae.pt` are the others' files."""

ACCEPTED = "config.json + model.safetensors (mmsae), cfg.json + sae_weights.safetensors (SAELens), " + ", ".join(
    f.LAYOUT for f in FORMATS
)
"""What an SAE folder may hold, for the one-line error about a folder that holds none of it."""

_NATIVE = ("model.safetensors", "sae_weights.safetensors", "train_config.json")
"""mmsae's and SAELens's weight files, and the config an mmsae training run writes first (its
folder holds `checkpoint.pt` until the weights are saved): a folder with one is `load_sae`'s own."""


def _format_of(folder: Path):
    if any((folder / name).exists() for name in _NATIVE):
        return None
    return next((f for f in FORMATS if f.detect(folder)), None)


def load_foreign(folder: str | Path) -> SparseAutoencoder | None:
    """The SAE a foreign folder holds, None for an mmsae or SAELens folder, or `SAELoadError`.

    A folder of several SAEs as these libraries write them (a sparsify run with one subfolder per
    hookpoint, a dictionary_learning `save_dir` of `trainer_N/`, a saev run with `checkpoint/`)
    loads when it holds exactly one, and otherwise names them so that the user can pick one.
    """
    folder = Path(folder)
    try:
        fmt = _format_of(folder)
        if fmt is not None:
            return fmt.load(folder)
        if any((folder / name).exists() for name in _NATIVE):
            return None
        inner = [(sub, f) for sub in sorted(folder.iterdir()) if sub.is_dir() and (f := _format_of(sub))]
        entries = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise SAELoadError(f"{folder}: cannot be read: {exc.strerror}") from None
    if len(inner) == 1:
        sub, f = inner[0]
        return f.load(sub)
    if inner:
        names = ", ".join(f"{sub.name} ({f.NAME})" for sub, f in inner[:8]) + (" ..." if len(inner) > 8 else "")
        raise SAELoadError(f"{folder} holds {len(inner)} SAEs: {names}; pass one of them, e.g. {inner[0][0]}")
    if (folder / "config.json").exists() or (folder / "cfg.json").exists():
        return None  # load_sae reads the config and says what is missing
    if len(overcomplete.candidates(folder)) > 1:
        names = ", ".join(p.name for p in overcomplete.candidates(folder)[:8])
        raise SAELoadError(f"{folder} holds several weight files ({names}); put the one to load in a folder of its own")
    found = ", ".join(entries[:8]) + (" ..." if len(entries) > 8 else "") if entries else "nothing"
    raise SAELoadError(f"{folder} is not an SAE folder: found {found}; accepted: {ACCEPTED}")
