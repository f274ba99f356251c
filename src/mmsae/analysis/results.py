"""One results folder per analysis: `<name>.json`, `<name>.png` / `.svg` plots and `<name>.md`.

The report and the explorer read these files; nothing else is shared between analyses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(folder: Path, name: str, obj: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(obj, indent=2, default=_default))
    os.replace(tmp, path)
    return path


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


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
    path.write_text(text.rstrip() + "\n")
    return path
