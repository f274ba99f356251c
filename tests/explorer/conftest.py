"""Fixtures shared by the explorer's tests: the system Chromium, the app served on a free port, and
the demo run served once per module."""

import contextlib
import os
import shutil
import socket
import threading
import time

import pytest

from mmsae.explorer.app import create_app
from mmsae.explorer.index import load_explorer
from mmsae.runs import find_run


def chromium() -> str:
    """The system Chromium; a failure in CI, a skip elsewhere (no test tool downloads a browser)."""
    path = os.environ.get("MMSAE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        msg = "no chromium on PATH: apt-get install chromium (or set MMSAE_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@contextlib.contextmanager
def browser_page():
    """A page of the system Chromium (1280×900) that records the page's script errors in `.errors`."""
    pw = pytest.importorskip("playwright.sync_api")
    exe = chromium()
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg
        browser.close()


@contextlib.contextmanager
def serving(app):
    """The app on a free loopback port, served by uvicorn in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.time()
    while not srv.started:
        assert time.time() - t0 < 30, "explorer server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        th.join(10)


@pytest.fixture(scope="module")
def server(demo_run):
    data = load_explorer(find_run(demo_run))
    with serving(create_app(data)) as url:
        yield url, data, demo_run


def wait_ready(pg, hash_):
    """Until the front end says it has rendered the page for `hash_`."""
    pg.wait_for_function("h => document.body.dataset.ready === h", arg=hash_, timeout=20000)
