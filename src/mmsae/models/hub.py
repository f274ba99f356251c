"""SAEs on the Hugging Face hub: `hf://user/repo/subfolder` wherever an SAE folder is accepted
(`models.publish.export_hub` writes the other direction: a folder ready to upload).

`hf://user/repo/sub` is resolved through `huggingface_hub.snapshot_download`, fetching only the
subfolder: the local cache first (so a cached SAE loads with no network and no request), then the
hub, unless the hub is switched off (`HF_HUB_OFFLINE=1`). A bare `user/repo/sub` that is not a
local path is looked up in the cache only: a mistyped relative path must never reach the network.
The subfolder may be an mmsae folder or a SAELens one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mmsae.errors import SAELoadError

HUB_PREFIX = "hf://"
"""Marks an SAE argument as a Hugging Face hub id that may be fetched over the network."""
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_ID = re.compile(rf"{_PART}/{_PART}(/{_PART})*")
_SAE_FILES = (("config.json", "model.safetensors"), ("cfg.json", "sae_weights.safetensors"))
"""An mmsae folder, or a SAELens one: what makes a downloaded subfolder an SAE."""
_ROOT_PATTERNS = [
    "config.json",
    "model.safetensors",
    "cfg.json",
    "sae_weights.safetensors",
    "metrics.json",
    "names.json",
]
"""Files fetched for an SAE at a repository's root (a subfolder is fetched whole)."""


def is_hub_id(spec: str) -> bool:
    """`user/repo` or `user/repo/sub/folder` in the hub's characters (no `--` or `..` in a name)."""
    return bool(_HUB_ID.fullmatch(spec)) and not any("--" in p or ".." in p for p in spec.split("/"))


def looks_like_hub_id(spec: str) -> bool:
    """A hub id not meant as a local path: not absolute, no `.`/`..` parts, and a first part that
    is not a local folder (there, a missing SAE is a mistyped path, and saying so is the better
    message)."""
    return is_hub_id(spec) and not Path(spec.split("/")[0]).exists()


def split_hub_id(spec: str) -> tuple[str, str]:
    """("user/repo", "sub/folder"); the subfolder is "" for an SAE at the repository's root."""
    parts = spec.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it, read now: its own constant is fixed when it is
    first imported, which would ignore an HF_HOME set later in the same process."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether the hub is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), read now."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def _is_sae(folder: Path) -> bool:
    return any(all((folder / f).is_file() for f in files) for files in _SAE_FILES)


def _fetch_command(repo_id: str, sub: str) -> str:
    include = f" --include '{sub}/*'" if sub else ""
    return f"`hf download {repo_id}{include}`"


def resolve_hub_id(spec: str, allow_network: bool = True) -> Path:
    """The local folder holding the SAE `spec` names on the hub: from the cache, else (when
    `allow_network`) downloaded; a one-line `SAELoadError` saying what is missing and how to fetch
    it otherwise."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise SAELoadError(
            f"{spec} is not a local folder; to load it from the Hugging Face hub, install huggingface_hub: "
            "pip install 'mmsae[hub]'"
        ) from None
    repo_id, sub = split_hub_id(spec)
    cache = hub_cache_dir()
    patterns = [f"{sub}/*"] if sub else _ROOT_PATTERNS
    what = (
        f"subfolder {sub!r} of the Hugging Face hub repository {repo_id}"
        if sub
        else f"Hugging Face hub repository {repo_id}"
    )

    def download(local_only: bool) -> Path | None:
        root = huggingface_hub.snapshot_download(
            repo_id, allow_patterns=patterns, local_files_only=local_only, cache_dir=cache
        )
        folder = Path(root) / sub
        return folder if _is_sae(folder) else None

    try:
        folder = download(local_only=True)
    except LocalEntryNotFoundError:  # no snapshot of the repository cached, or an incomplete one
        folder = None
    except HFValidationError as exc:  # the hub's rules are stricter than the pattern (lengths, endings)
        raise SAELoadError(f"{spec} is not a local folder, nor a valid Hugging Face hub id: {exc}") from None
    if folder is not None:
        return folder
    if not allow_network:  # a bare `a/b/c`: perhaps a mistyped relative path, never sent to the hub
        raise SAELoadError(
            f"{spec}: no such SAE folder, and no {what} in the local hub cache at {cache}; to fetch it from "
            f"the Hugging Face hub, write it as {HUB_PREFIX}{spec}"
        )
    if hub_offline():
        raise SAELoadError(
            f"{spec} is not a local folder, and the {what} is not in the "
            f"local cache at {cache} (HF_HUB_OFFLINE is set, so it was not fetched); fetch it with "
            f"{_fetch_command(repo_id, sub)} where the hub is reachable (with the same HF_HOME), or unset HF_HUB_OFFLINE"
        )
    try:
        folder = download(local_only=False)
    except (RepositoryNotFoundError, GatedRepoError):
        raise SAELoadError(
            f"{spec} is not a local folder, and {repo_id} is not a Hugging Face hub repository you can read "
            "(no such repository, or a private or gated one: log in with `hf auth login`)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - no connection, a proxy, the hub down: the network's answer, in its library's types
        reason = " ".join(str(exc).split())[:160]
        raise SAELoadError(
            f"{spec} is not a local folder, and the {what} is not in the "
            f"local cache at {cache} and could not be fetched ({type(exc).__name__}: {reason}); check the "
            f"connection, or fetch it with {_fetch_command(repo_id, sub)} where the hub is reachable"
        ) from None
    if folder is None:
        raise SAELoadError(
            f"the Hugging Face hub repository {repo_id} has no SAE folder {sub or '(root)'!r} "
            "(config.json + model.safetensors, or SAELens cfg.json + sae_weights.safetensors)"
        )
    return folder


def resolve_sae_path(spec: str | os.PathLike) -> Path:
    """The local folder an SAE argument names. `hf://user/repo[/sub]`: from the hub cache, else the
    hub. A bare `user/repo[/sub]` that is no local path: from the hub cache only, since it may be a
    mistyped relative path that should never be sent over the network (nor silently answered by a
    stranger's repository of that name). Anything else: the local path as given."""
    if isinstance(spec, str) and spec.startswith(HUB_PREFIX):
        hub_id = spec[len(HUB_PREFIX) :]
        if not is_hub_id(hub_id):
            raise SAELoadError(f"{spec} is not a Hugging Face hub id ({HUB_PREFIX}user/repo[/subfolder])")
        return resolve_hub_id(hub_id, allow_network=True)
    path = Path(spec)
    if path.exists() or not isinstance(spec, str) or not looks_like_hub_id(spec):
        return path
    return resolve_hub_id(spec, allow_network=False)
