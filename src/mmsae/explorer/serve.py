"""Running the explorer app with uvicorn, with one clear message when the extra or the port is missing."""

from __future__ import annotations

import gc
import json
import os
import socket

from mmsae.errors import MmsaeError

WORKER_ENV = "MMSAE_EXPLORER_WORKER"
"""How the parent hands the run to worker processes, which uvicorn starts afresh from an import string."""


def _require_server() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MmsaeError("the explorer needs FastAPI and uvicorn: pip install 'mmsae[explorer]'") from None


def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise MmsaeError(f"--port must be in 1 … 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise MmsaeError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None


def allowed_hosts(host: str, extra=()) -> list[str]:
    """The Host header names a request may carry: loopback, the bound address, and --allow-host."""
    from mmsae.explorer.app import LOOPBACK, _hostname

    out = [*LOOPBACK, host]
    for name in extra:
        if not _hostname(name):
            raise MmsaeError(f"--allow-host wants a host name or address (optionally with :port), got {name!r}")
        out.append(name)
    return out


def worker_app():
    """The app factory each worker process imports: it reopens the run (the index is already cached)."""
    from mmsae.explorer.app import create_app
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    spec = json.loads(os.environ[WORKER_ENV])
    data = load_explorer(find_run(spec["run"], sae=spec["sae"], store=spec["store"]))
    app = create_app(data, spec["hosts"], text_encoder=tuple(spec["text_encoder"]))
    _freeze()
    return app


def _freeze() -> None:
    """Everything loaded so far lives as long as the server: out of the collector's sight, a full
    collection no longer walks the SAE, the index and the libraries, stalling every request."""
    gc.collect()
    gc.freeze()


def serve(
    data,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = False,
    allow_hosts=(),
    workers: int = 1,
    text_encoder: tuple[str | None, str | None] = (None, None),
) -> None:
    """Blocks until Ctrl-C. With several workers, each worker process loads the run itself (from
    the cache `data` was loaded with) and this one lets go of `data`, which it would hold unused."""
    _require_server()
    import uvicorn

    from mmsae.explorer.app import create_app

    if workers < 1:
        raise MmsaeError(f"--workers must be ≥ 1, got {workers}")
    hosts = allowed_hosts(host, allow_hosts)
    check_port(host, port)
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
    print(f"mmsae explorer: {url}  (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"warning: bound to {host}; anyone who can reach this machine can browse the store "
            f"(requests must name one of: {', '.join(dict.fromkeys(hosts))}; add others with --allow-host)"
        )
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    if workers == 1:
        app = create_app(data, hosts, text_encoder=text_encoder)
        _freeze()
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    lay = data.layout
    os.environ[WORKER_ENV] = json.dumps(
        {
            "run": str(lay.root),
            "sae": str(lay.sae),
            "store": str(lay.store),
            "hosts": hosts,
            "text_encoder": list(text_encoder),
        }
    )
    del data
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port, log_level="warning")
