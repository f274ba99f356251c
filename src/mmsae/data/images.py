"""Where a store's images live, and opening one without leaving that place.

An image row's `source` is a path relative to the store's image root (or an absolute path inside
it); the root is recorded in the manifest (`preprocessing["image_root"]`, relative to the store).
Anything that resolves outside the root, through `..`, an absolute path or a symlink, is refused:
the explorer serves files named by stored metadata, and metadata can come from anywhere.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_ROOT_KEY = "image_root"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


class OutsideRoot(PermissionError):
    """A path that resolves outside the allowed folder."""


def image_root(store) -> Path | None:
    """The store's image folder, resolved, or None when its rows carry no image files."""
    root = store.manifest.preprocessing.get(IMAGE_ROOT_KEY)
    if not root:
        return None
    path = Path(root)
    return (path if path.is_absolute() else Path(store.root) / path).resolve()


def safe_file(root: Path, name: str, suffixes: tuple[str, ...] | None = None) -> Path | None:
    """`root/name` if it is a regular file inside `root` after resolving symlinks; None if it does
    not exist; raises OutsideRoot if it points outside or has a suffix not in `suffixes`."""
    if not name or "\x00" in name or "://" in name:
        raise OutsideRoot(name)
    root = Path(root).resolve()
    target = Path(name)
    target = (target if target.is_absolute() else root / target).resolve()
    if not target.is_relative_to(root):
        raise OutsideRoot(name)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise OutsideRoot(name)
    return target if target.is_file() else None
