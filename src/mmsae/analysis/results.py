"""One results folder per analysis: `<name>.json`, `<name>.png` / `.svg` plots and `<name>.md`.

The report and the explorer read these files; nothing else is shared between analyses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsae.fileio import atomic_write, write_json_atomic


def write_json(folder: Path, name: str, obj: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(folder / f"{name}.json", obj)


def save_figure(fig, folder: Path, name: str) -> list[str]:
    """PNG (for the explorer) and SVG (for papers) of one figure; closes it."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = folder / f"{name}.{ext}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height))


def write_markdown(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    atomic_write(path, text.rstrip() + "\n")
    return path
