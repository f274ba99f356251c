"""`mmsae` entry point: one sub-command per stage of the pipeline.

User mistakes (`MmsaeError`) print one line to stderr and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from mmsae.errors import MmsaeError

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))


def build_parser() -> argparse.ArgumentParser:
    from mmsae import __version__
    from mmsae.cli import (analyze_cmd, compare_cmd, demo_cmd, embed_cmd, eval_cmd, explore_cmd, hallucination_cmd, import_cmd,
                           info_cmd, interpret_cmd, steer_cmd, synth_cmd, train_cmd)

    p = argparse.ArgumentParser(prog="mmsae", description="Sparse autoencoders on vision-language embedding spaces.")
    p.add_argument("--version", action="version", version=f"mmsae {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in (demo_cmd, embed_cmd, synth_cmd, import_cmd, train_cmd, eval_cmd, analyze_cmd, interpret_cmd, compare_cmd,
                hallucination_cmd, steer_cmd, explore_cmd, info_cmd):
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except MmsaeError as exc:
        print(f"mmsae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmsae {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
