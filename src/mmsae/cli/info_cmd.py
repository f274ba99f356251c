"""`mmsae info`: what a store or an SAE folder holds."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a store or an SAE folder")
    p.add_argument("path")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.main import _print_json
    from mmsae.errors import MmsaeError

    path = Path(args.path)
    if (path / "manifest.json").exists():
        from mmsae.data.importers import store_summary
        from mmsae.data.store import EmbeddingStore

        _print_json(store_summary(EmbeddingStore(path)))
    elif (path / "config.json").exists() or (path / "cfg.json").exists():
        from mmsae.models.io import SAELoadError, load_sae

        try:
            sae = load_sae(path)
        except SAELoadError as exc:
            raise MmsaeError(str(exc)) from None
        _print_json({"sae": str(path), "architecture": sae.architecture, **sae.cfg.to_dict(),
                     "provenance": getattr(sae, "provenance", {})})
    else:
        raise MmsaeError(f"{path} is neither a store nor an SAE folder")
    return 0
