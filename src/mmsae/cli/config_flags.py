"""Command-line flags made from a config dataclass: one flag per field, its help from the field's
docstring, its default from the field's default. Options are typed once, in the config, so the
flags can never drift from what the config accepts (the checks stay in its `__post_init__`)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (PEP 257 attribute docstrings), one line each."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _items(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(s.strip()) for s in text.split(",") if s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    parse.__name__ = f"{kind.__name__} list"
    return parse


def _flag_type(annotation: str):
    """(argparse type, is a boolean switch) of a field's annotation."""
    alts = [a.strip() for a in annotation.split("|") if a.strip() != "None"]
    ann = alts[0] if alts else "str"
    if ann == "bool":
        return None, True
    if ann.startswith("tuple["):
        inner = ann[len("tuple[") :].split(",")[0].strip()
        return _items({"int": int, "float": float}.get(inner, str)), False
    return {"int": int, "float": float}.get(ann, str), False


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def field_default(f: dataclasses.Field) -> Any:
    """A field's default (made by its default factory if it has one); None for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "empty"
    return str(value)


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    aliases: dict[str, tuple[str, ...]] | None = None,
    names: dict[str, str] | None = None,
    types: dict[str, Callable[[str], Any]] | None = None,
    switches: dict[str, tuple[str, Any]] | None = None,
) -> None:
    """One flag per field of `cls` (not in `skip`). Every flag defaults to None, "not given", so a
    value from a config file is overridden only by a flag that was typed.

    `names` renames a field's flag (`{"l1_coefs": "--l1"}`: that is then its only name) and `aliases`
    adds more names to it; `types` replaces the argparse type read from the annotation (a check such
    as `positive_int`, or `str` for text the command converts itself); `switches` makes a field a flag
    without a value that sets it to the value given (`{"pareto": ("--no-pareto", False)}`)."""
    docs, aliases, names, types, switches = field_docs(cls), aliases or {}, names or {}, types or {}, switches or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = field_default(f)
        help_text = docs.get(f.name, "").replace("%", "%%")
        if f.name in switches:
            flag, value = switches[f.name]
            effect = "turns it off" if value is False else "turns it on" if value is True else f"sets {value}"
            parser.add_argument(
                flag,
                *aliases.get(f.name, ()),
                dest=f.name,
                action="store_const",
                const=value,
                default=None,
                help=f"{help_text} (default: {_default_text(default)}; this flag {effect})",
            )
            continue
        typ, switch = _flag_type(f.type if isinstance(f.type, str) else f.type.__name__)
        typ = types.get(f.name, typ)
        primary = names.get(f.name, flag_name(f.name))
        all_names = (primary, *aliases.get(f.name, ()))
        if switch:
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(*all_names, dest=f.name, action=action, default=None, help=help_text)
        else:
            parser.add_argument(
                *all_names,
                dest=f.name,
                type=typ,
                default=None,
                metavar=primary.lstrip("-").replace("-", "_").upper(),
                help=f"{help_text} (default: {_default_text(default)})",
            )


def given_options(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of `cls` that were set on the command line."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in skip and getattr(args, f.name, None) is not None
    }
