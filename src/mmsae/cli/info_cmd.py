"""`mmsae info`: what a store or an SAE folder holds."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="describe a store or an SAE folder",
        description="Describe a store or an SAE folder. With --check, read every shard of a store "
        "and list each way its files disagree with the manifest (exit 2 if any).",
    )
    p.add_argument("path")
    p.add_argument(
        "--check",
        action="store_true",
        help="store: verify every shard's files exist, load and agree (shapes, row counts, row ids, "
        "modality counts, no NaN/inf)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.data.manifest import MANIFEST_NAME
    from mmsae.errors import MmsaeError

    path = Path(args.path)
    if (path / MANIFEST_NAME).exists():
        from mmsae.data.importers import store_summary
        from mmsae.data.store import EmbeddingStore

        store = EmbeddingStore(path)
        summary = store_summary(store)
        if args.check:
            problems = store.check()
            summary["check"] = {"ok": not problems, "problems": problems}
            print_json(summary)
            if problems:
                raise MmsaeError(
                    f"{len(problems)} problem(s) in {path}: {problems[0]}"
                    + (" (all of them above)" if len(problems) > 1 else "")
                )
            return 0
        print_json(summary)
    else:
        from mmsae.models.hub import HUB_PREFIX, looks_like_hub_id
        from mmsae.models.io import SAELoadError, load_sae

        if not path.is_dir() and not (looks_like_hub_id(args.path) or args.path.startswith(HUB_PREFIX)):
            raise MmsaeError(f"{path} is neither a store nor an SAE folder")
        try:  # any SAE `load_sae` reads: mmsae, SAELens, other libraries' checkpoints, hub ids
            sae = load_sae(args.path)
        except SAELoadError as exc:
            raise MmsaeError(str(exc)) from None
        print_json(
            {
                "sae": str(path),
                "architecture": sae.architecture,
                **sae.cfg.to_dict(),
                "provenance": getattr(sae, "provenance", {}),
            }
        )
    return 0
