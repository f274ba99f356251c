"""Screenshots of the explorer for the docs: python scripts/screenshots.py RUN_DIR docs/

Serves RUN_DIR's explorer on a free local port and drives the system Chromium with Playwright:
the concept index, and the page of the first concept that has a bridge (else the most frequent).
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path


def main(run: str, out: str) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from mmsae.explorer.app import create_app
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    data = load_explorer(find_run(run))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(data), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    bridged = [b["image_concept"] for b in data.bridges if b["significant"]]
    concept = bridged[0] if bridged else int(data.table["frequency"].argmax())
    Path(out).mkdir(parents=True, exist_ok=True)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("[data-testid=concept-row]")
        page.screenshot(path=f"{out}/explorer-index.png")
        page.goto(f"http://127.0.0.1:{port}/#/concept/{concept}")
        page.wait_for_function("h => document.body.dataset.ready === h", arg=f"#/concept/{concept}")
        page.wait_for_function(
            "() => { const im = [...document.querySelectorAll('[data-testid=top-images] img')]; "
            "return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0) }"
        )
        page.screenshot(path=f"{out}/explorer-concept.png", full_page=True)
        browser.close()
    server.should_exit = True
    print(f"written: {out}/explorer-index.png, {out}/explorer-concept.png (concept {concept})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
