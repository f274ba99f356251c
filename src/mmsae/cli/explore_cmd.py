"""`mmsae explore` (the local web explorer) and `mmsae report` (one self-contained HTML file)."""

from __future__ import annotations

from mmsae.cli.output import positive_int
from mmsae.cli.text_flags import add_text_encoder_flags, check_text_encoder_flags

RUN_HELP = (
    "run folder: one written by `mmsae demo`, any folder with a run.json naming its SAE and store, or an SAE "
    "folder; analyses written into it (mmsae name/top/analyze --out RUN/...) are picked up"
)


def register(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="local web app: concepts with their top images, texts, names and bridges",
        description="Serves the concept explorer for a run folder on http://HOST:PORT. The first start "
        "makes one pass over the store (concept statistics, histograms, and top examples "
        "when `mmsae top` has not written them) and caches it in RUN/explorer/.",
    )
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--sae", help="SAE folder (default: from run.json, or RUN itself)")
    p.add_argument("--store", help="store folder (default: from run.json, or where the SAE was trained)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the browser may use for this machine (repeatable); requests naming any "
        "other than localhost, 127.0.0.1, [::1] and --host are refused, against DNS rebinding",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="server processes (default 1); each holds its own copy of the index",
    )
    add_text_encoder_flags(p)
    p.add_argument("--rebuild", action="store_true", help="recompute the cached index")
    p.add_argument("--no-open", action="store_true", help="do not open a browser window")
    p.set_defaults(func=run_explore)

    r = sub.add_parser(
        "report",
        help="one self-contained HTML report of a run folder (opens offline)",
        description="Writes RUN/report.html (or --out): held-out metrics of every SAE in the folder, "
        "the multimodal comparison, the analyses' headline numbers and plots, and a gallery "
        "of the most used concepts with their top pictures and texts, all embedded.",
    )
    r.add_argument("run", help=RUN_HELP)
    r.add_argument("--out", help="output file (default RUN/report.html)")
    r.add_argument("--gallery", type=positive_int, default=24, help="concepts in the gallery (default 24)")
    r.set_defaults(func=run_report)


def run_explore(args) -> int:
    from mmsae.errors import MmsaeError
    from mmsae.explorer.index import load_explorer
    from mmsae.explorer.serve import _require_server, allowed_hosts, check_port, serve
    from mmsae.runs import find_run

    _require_server()
    if args.workers < 1:
        raise MmsaeError(f"--workers must be ≥ 1, got {args.workers}")
    allowed_hosts(args.host, args.allow_host)  # these checks come before a long first indexing pass
    check_port(args.host, args.port)
    check_text_encoder_flags(args)
    serve(
        load_explorer(find_run(args.run, sae=args.sae, store=args.store), progress=True, rebuild=args.rebuild),
        host=args.host,
        port=args.port,
        open_browser=not args.no_open,
        allow_hosts=args.allow_host,
        workers=args.workers,
        text_encoder=(args.text_encoder, args.weights),
    )
    return 0


def run_report(args) -> int:
    from mmsae.errors import MmsaeError
    from mmsae.pipelines.report import write_report

    if args.gallery < 0:
        raise MmsaeError(f"--gallery must be ≥ 0, got {args.gallery}")
    path = write_report(args.run, args.out, gallery=args.gallery)
    print(f"written: {path}")
    return 0
