"""`mmsae` entry point: one sub-command per stage of the pipeline.

The error policy: a user mistake (`MmsaeError`, a bad flag, an OS error such as a full disk or a
missing permission) prints one line to stderr and exits with code 2. Anything else is a bug in
mmsae: one line saying so, with the path of a log file holding the traceback, and exit code 1
(`MMSAE_DEBUG=1` lets the traceback through instead).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
import traceback
from pathlib import Path

from mmsae.errors import MmsaeError


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block): the same shape as every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _crash_log(exc: BaseException, argv: list[str] | None) -> Path | None:
    text = f"mmsae {sys.argv[0]!r} argv={argv if argv is not None else sys.argv[1:]!r}\n" + "".join(
        traceback.format_exception(exc)
    )
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for folder in (os.environ.get("MMSAE_LOG_DIR"), Path.home() / ".cache" / "mmsae", tempfile.gettempdir()):
        if not folder:
            continue
        try:
            path = Path(folder) / f"crash-{stamp}-{os.getpid()}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def build_parser() -> argparse.ArgumentParser:
    from mmsae.cli import (
        analyze_cmd,
        compare_cmd,
        demo_cmd,
        embed_cmd,
        eval_cmd,
        explore_cmd,
        export_cmd,
        hallucination_cmd,
        import_cmd,
        info_cmd,
        interpret_cmd,
        steer_cmd,
        synth_cmd,
        train_cmd,
        world_cmd,
    )
    from mmsae.version import __version__

    p = _Parser(prog="mmsae", description="Sparse autoencoders on vision-language embedding spaces.")
    p.add_argument("--version", action="version", version=f"mmsae {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for mod in (
        demo_cmd,
        embed_cmd,
        synth_cmd,
        world_cmd,
        import_cmd,
        train_cmd,
        eval_cmd,
        analyze_cmd,
        interpret_cmd,
        compare_cmd,
        hallucination_cmd,
        steer_cmd,
        explore_cmd,
        export_cmd,
        info_cmd,
    ):
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad flag (already said in one line)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"mmsae {args.command}"
    try:
        rc = args.func(args)
        return int(rc or 0)
    except MmsaeError as exc:
        _close_progress_bars()
        print(f"{name}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except MemoryError:
        _close_progress_bars()
        print(
            f"{name}: error: out of memory; ask for less (fewer rows, latents or examples) or use a larger machine",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:  # the environment's answer (no space, no permission, no such file): not a bug
        _close_progress_bars()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{name}: error: {exc.strerror or _one_line(str(exc))}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        if _is_allocation_failure(exc):  # torch's allocators raise RuntimeError, not MemoryError
            _close_progress_bars()
            print(
                f"{name}: error: out of memory; ask for less (fewer rows, latents or examples) or use a larger machine",
                file=sys.stderr,
            )
            return 2
        if os.environ.get("MMSAE_DEBUG"):
            raise
        _close_progress_bars()
        log = _crash_log(exc, argv)
        print(
            f"{name}: internal error ({type(exc).__name__}: {_one_line(str(exc))[:200]}); this is a bug in mmsae, "
            f"please report it{f' with {log}' if log else ''}",
            file=sys.stderr,
        )
        return 1


def _close_progress_bars() -> None:
    """A bar left open by the failed step would put the error on its line; closing ends that line."""
    tqdm = sys.modules.get("tqdm") and getattr(sys.modules["tqdm"], "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the error
            pass


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


if __name__ == "__main__":
    raise SystemExit(main())


def _is_allocation_failure(exc: BaseException) -> bool:
    """PyTorch's "DefaultCPUAllocator: can't allocate memory" and CUDA's "out of memory" are
    RuntimeErrors: the machine's answer to a request too big for it, not a bug."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())
