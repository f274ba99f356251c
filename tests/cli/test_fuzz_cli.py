"""Every option of every command, with values a user might type by mistake (hypothesis).

The property: the command exits 0, or exits 2 with one error line; never a traceback, never the
"internal error" of a bug (exit 1), and the input store's bytes are unchanged. The budget is
small in CI (`MMSAE_FUZZ_EXAMPLES`, default 40 a test); `scripts/robustness.sh` runs a long one
(`MMSAE_FUZZ_LOG=FILE` appends each command with its exit code and last stderr line).
Each example has a time budget: a valid command that simply has a lot to do (`--epochs 1e6`) is
stopped and counts as neither pass nor fail.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="install the [test] extra (hypothesis) to fuzz the CLI")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmsae.cli.main import build_parser, main  # noqa: E402

EXAMPLES = int(os.environ.get("MMSAE_FUZZ_EXAMPLES", "40"))
BUDGET_S = float(os.environ.get("MMSAE_FUZZ_BUDGET_S", "15"))
SKIP = {"demo", "explore", "world train"}
"""`demo` and `explore` serve until stopped (the explorer's inputs have their own tests); `world
train` trains for minutes with valid options, and its budget alarm did not stop it inside pytest (a
derandomized draw ran it to the end, 12 minutes of CI): its options are checked in tests/world."""


class _OverBudget(BaseException):
    """Raised by the alarm: a BaseException, so the CLI's catch-all cannot take it for a bug."""


def _commands() -> dict[str, argparse.ArgumentParser]:
    out = {}

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[" ".join(prefix)] = parser
            return
        for name, sp in subs[0].choices.items():
            walk(sp, [*prefix, name])

    walk(build_parser(), [])
    return {k: v for k, v in out.items() if k not in SKIP and k.split()[0] not in SKIP}


COMMANDS = _commands()


@pytest.fixture(scope="module", autouse=True)
def _memory_cap():
    """Asking for a huge model is a valid command; on this machine it must end as one line
    ("out of memory"), not take the test process down with the kernel's OOM killer."""
    import resource

    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(os.environ.get("MMSAE_FUZZ_MEMORY_GB", "8")) << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    yield
    resource.setrlimit(resource.RLIMIT_AS, old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An imported paired store with captions, an SAE trained on it, and input files."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    n, d = 600, 16
    img = rng.standard_normal((n, d)).astype(np.float32)
    np.save(root / "img.npy", img)
    np.save(root / "txt.npy", (img + 0.3 * rng.standard_normal((n, d))).astype(np.float32))
    (root / "captions.txt").write_text(
        "\n".join(f"a photo of thing {i % 37} and a {'red' if i % 2 else 'blue'} cat" for i in range(n)) + "\n"
    )
    (root / "vocab.txt").write_text("\n".join(["cat", "dog", "red", "blue", "photo", "thing", "car", "tree"]) + "\n")
    store = root / "store"
    assert (
        main(
            [
                "import",
                "--images",
                str(root / "img.npy"),
                "--texts",
                str(root / "txt.npy"),
                "--captions",
                str(root / "captions.txt"),
                "--out",
                str(store),
                "--json",
            ]
        )
        == 0
    )
    sae = root / "sae"
    assert (
        main(
            [
                "train",
                str(store),
                "--out",
                str(sae),
                "--dict-size",
                "32",
                "--k",
                "4",
                "--batch-size",
                "128",
                "--steps",
                "20",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    return {"root": root, "store": store, "sae": sae}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".writer.lock":
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


_WORDS = st.sampled_from(
    [
        "",
        "x",
        "-1",
        "0",
        "1",
        "3",
        "1e9",
        "nan",
        "inf",
        "-inf",
        "1e300",
        "2.5",
        str(2**70),
        "{} {}",
        "{}",
        "a:b",
        "nan:1",
        "1:3",
        "0,4",
        "4,8",
        "image",
        "text",
        "both",
        "cpu",
        "tpu",
        "..",
        "../../etc/passwd",
        "é\u2028x",
        " ",
        "-",
        "--",
    ]
)


def _value(action: argparse.Action, world, fresh: Path):
    """A strategy of strings for one option, from its type, choices and name; half the time its
    default, so that valid runs are explored too."""
    if action.default not in (None, argparse.SUPPRESS) and not isinstance(action.default, (bool, list)):
        return st.one_of(st.just(str(action.default)), _any_value(action, world, fresh))
    return _any_value(action, world, fresh)


def _any_value(action: argparse.Action, world, fresh: Path):
    name = action.dest
    files = [str(world["root"] / f) for f in ("img.npy", "txt.npy", "captions.txt", "vocab.txt")]
    paths = [str(world["store"]), str(world["sae"]), str(world["root"]), "/proc/self", "/nonexistent/x", *files]
    if action.choices:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), _WORDS)
    if name in ("out", "heatmaps"):
        return st.sampled_from([str(fresh), str(fresh / "sub"), files[0], "/proc/x", str(world["root"])])
    kind = getattr(action.type, "__name__", "str")
    if "int" in kind:
        return st.one_of(st.integers(-3, 5).map(str), st.sampled_from(["0", "64", "100000", str(2**70), "x", "1.5"]))
    if "float" in kind or kind == "fraction":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), _WORDS)
    return st.one_of(st.sampled_from(paths), _WORDS)


def _positional(dest: str, world):
    good = {
        "store": world["store"],
        "sae": world["sae"],
        "path": world["store"],
        "run": world["sae"].parent,
        "embeddings": world["root"] / "img.npy",
        "input": world["root"] / "captions.txt",
    }.get(dest, world["root"])
    return st.sampled_from(
        [str(good)] * 4
        + [
            str(world["root"] / "missing"),
            str(world["root"] / "vocab.txt"),
            str(world["sae"] if dest == "store" else world["store"]),
        ]
    )


@st.composite
def _invocation(draw, world, fresh: Path):
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    parser = COMMANDS[cmd]
    argv = cmd.split()
    for a in parser._actions:
        if not a.option_strings and a.dest != "help":
            argv.append(draw(_positional(a.dest, world)))
    options = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]
    required = [a for a in options if a.required]
    chosen = required + draw(st.lists(st.sampled_from(options), max_size=3, unique_by=lambda a: a.dest))
    for a in chosen:
        argv.append(a.option_strings[-1])
        if a.nargs != 0:
            argv.append(draw(_value(a, world, fresh)))
    if "--json" in [s for a in options for s in a.option_strings] and draw(st.booleans()):
        argv.append("--json")
    return argv


def _alarm(signum, frame):
    raise _OverBudget


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") is not None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_option_exits_cleanly(world, tmp_path_factory, capfd, data):
    fresh = tmp_path_factory.mktemp("out") / "o"
    argv = data.draw(_invocation(world, fresh))
    before = _digest(world["store"])
    if os.environ.get("MMSAE_FUZZ_LOG"):
        with open(os.environ["MMSAE_FUZZ_LOG"], "a") as f:
            f.write(f"start\t{argv}\n")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, BUDGET_S)
    try:
        rc = main(argv)
    except _OverBudget:
        rc = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out, err = capfd.readouterr()
    if os.environ.get("MMSAE_FUZZ_LOG"):
        with open(os.environ["MMSAE_FUZZ_LOG"], "a") as f:
            f.write(f"{rc}\t{argv}\t{err.strip().splitlines()[-1:]}\n")
    assert "Traceback" not in err, (argv, err[-2000:])
    if rc is None:
        return
    assert rc in (0, 2), (argv, rc, err[-2000:])
    if rc == 2:
        errors = [ln for ln in err.replace("\r", "\n").splitlines() if "error:" in ln]
        assert len(errors) == 1 and errors[0].startswith("mmsae"), (argv, err[-2000:])
        assert _digest(world["store"]) == before, argv
