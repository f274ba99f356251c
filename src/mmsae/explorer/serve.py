"""Running the explorer app with uvicorn, with one clear message when the extra or the port is missing."""

from __future__ import annotations

import socket

from mmsae.errors import MmsaeError


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


def serve(data, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False) -> None:
    """Blocks until Ctrl-C."""
    _require_server()
    import uvicorn

    from mmsae.explorer.app import create_app

    check_port(host, port)
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
    print(f"mmsae explorer: {url}  (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: bound to {host}; anyone who can reach this machine can browse the store")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(create_app(data), host=host, port=port, log_level="warning")
