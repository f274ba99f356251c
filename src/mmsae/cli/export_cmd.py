"""`mmsae export`: an SAE as a SAELens folder, or as a folder ready to upload to the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write an SAE as a SAELens folder or a Hugging Face hub folder",
        description="--format saelens writes cfg.json + sae_weights.safetensors, which "
        "sae_lens.SAE.load_from_disk loads with the same codes and reconstructions: relu as standard, "
        "topk as topk, matryoshka as topk at its inference k, batchtopk as jumprelu with its "
        "threshold per latent, jumprelu as jumprelu, gated as gated (paired SAEs have no SAELens "
        "counterpart). --format hub writes the mmsae weights and config, metrics.json, names.json "
        "and a model card README.md, ready for `hf upload`. SAE may be a local folder or a hub id "
        "(user/repo/subfolder).",
    )
    p.add_argument("sae")
    p.add_argument("--format", required=True, choices=["saelens", "hub"], dest="fmt")
    p.add_argument("--out", required=True, help="folder to write (created if missing)")
    p.add_argument(
        "--names",
        help="hub: names.json from `mmsae name` for the card's concept table (default: SAE/names.json, or the "
        "one in the run folder whose run.json names the SAE)",
    )
    p.add_argument(
        "--repo-id", help="hub: the id it will be uploaded as (user/repo[/subfolder]), for the card's loading example"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an SAE already in --out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _check_out(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an --out that would overwrite the SAE being exported, or another SAE unasked."""
    from mmsae.errors import MmsaeError

    if out.exists() and not out.is_dir():
        raise MmsaeError(f"--out {out} is a file; give a folder")
    if out.is_dir() and source.is_dir() and out.resolve() == source.resolve():
        raise MmsaeError(f"--out {out} is the SAE folder being exported; choose another folder")
    held = [n for n in ("config.json", "cfg.json") if (out / n).is_file()]
    if held and not overwrite:
        raise MmsaeError(
            f"{out} already holds an SAE ({held[0]}); pass --overwrite to replace it, or choose another --out"
        )


OTHER_FORMAT_FILES = {
    "saelens": ("config.json", "model.safetensors"),
    "hub": ("cfg.json", "sae_weights.safetensors"),
}
"""What an --overwrite removes from --out before writing the format named: the other format's SAE,
which `load_sae` would otherwise go on reading instead of (mmsae's) or beside (SAELens's) the new one."""


def _names(args, source: Path, dict_size: int):
    """(names, file, note): the concept names for the card, from --names (refused when they do not
    fit the SAE) or found beside the SAE (skipped, with a note, when they do not fit)."""
    from mmsae.cli.common import read_names
    from mmsae.errors import MmsaeError
    from mmsae.runs import find_names

    if args.names:
        return read_names(args.names, dict_size), Path(args.names), None
    found = find_names(source) if source.is_dir() else None
    if found is None:
        return None, None, None
    try:
        return read_names(str(found), dict_size), found, None
    except MmsaeError as exc:
        return None, None, f"names not included: {exc}"


def run(args) -> int:
    from mmsae.cli.output import print_json
    from mmsae.errors import MmsaeError
    from mmsae.models.hub import is_hub_id, resolve_sae_path, split_hub_id
    from mmsae.models.io import load_sae
    from mmsae.models.publish import export_hub
    from mmsae.models.saelens import export_note, export_saelens, saelens_architecture

    if args.repo_id is not None and not is_hub_id(args.repo_id):
        raise MmsaeError(f"--repo-id {args.repo_id!r} is not a hub id; give user/repo or user/repo/subfolder")
    if args.fmt == "saelens" and (args.names or args.repo_id):
        raise MmsaeError("--names and --repo-id are for --format hub (a SAELens folder has no model card)")
    source = resolve_sae_path(args.sae)
    sae = load_sae(source)
    out = Path(args.out)
    _check_out(out, source, args.overwrite)
    report = {"sae": args.sae, "architecture": sae.architecture, "format": args.fmt, "out": str(out)}
    notes = []
    if args.fmt == "saelens":
        report["saelens_architecture"] = saelens_architecture(sae)  # refuses paired SAEs before writing
    if args.overwrite:
        for name in OTHER_FORMAT_FILES[args.fmt]:
            (out / name).unlink(missing_ok=True)
    if args.fmt == "saelens":
        export_saelens(sae, out)
        report["written"] = [str(out / "sae_weights.safetensors"), str(out / "cfg.json")]
        notes.append(export_note(sae))
    else:
        names, names_file, note = _names(args, source, sae.cfg.dict_size)
        notes.append(note)
        written = export_hub(sae, out, source=source, names=names, names_file=names_file, repo_id=args.repo_id)
        report["written"] = [str(p) for p in written]
        report["names"] = str(names_file) if names_file else None
    report["notes"] = [n for n in notes if n]
    if args.json:
        print_json(report)
        return 0
    files = ", ".join(Path(p).name for p in report["written"])
    if args.fmt == "saelens":
        print(f"wrote {out} ({files}): a SAELens {report['saelens_architecture']} SAE")
        print(f"load it with: sae_lens.SAE.load_from_disk({str(out)!r})")
    else:
        print(f"wrote {out} ({files})")
        repo, sub = split_hub_id(args.repo_id) if args.repo_id else ("USER/REPO", "[SUBFOLDER]")
        print(f"upload it with: hf upload {repo} {out} {sub or '.'}")
    for n in report["notes"]:
        print(f"note: {n}")
    return 0
