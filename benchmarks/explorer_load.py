"""Does the explorer keep up with many clients at once? Starts the real server (`mmsae explore` in a
subprocess, on a free loopback port) over a run folder (--run, or the small demo run built once
into --dir), then sends --requests GETs over --concurrency connections (asyncio + httpx), spread
evenly over every GET the app serves: the page and its static files, the concept list with every
sort, order, bucket, filter and page, concept pages, row pages with their similar rows, text
queries, plots and images (after a warm-up, and one uncounted request per connection to open
it). Reports errors (non-2xx or exceptions), p50/p99/max latency per kind and overall,
requests/s, the CPU time of the server and of the load generator, and the server's peak resident
memory (VmHWM of it and its workers).

    python benchmarks/explorer_load.py [--run RUN] [--requests 10000] [--concurrency 100] [--workers 1]

The load generator runs on the same machine and takes CPU from the server: on a small machine
the numbers are a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlencode

import numpy as np


def build_run(root: Path) -> Path:
    """The small demo run (store with pictures, SAEs, names, analyses, plots, explorer index), once."""
    if not (root / "run.json").is_file():
        from mmsae.cli.main import main

        assert main(["demo", "--size", "small", "--out", str(root), "--no-serve", "--no-stability"]) == 0
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def peak_rss_mib(pid: int) -> dict[int, float]:
    """VmHWM (peak resident set) of a process and its descendants, MiB."""
    out = {}
    for p in _tree(pid):
        try:
            line = next(x for x in Path(f"/proc/{p}/status").read_text().splitlines() if x.startswith("VmHWM:"))
            out[p] = int(line.split()[1]) / 1024
        except (OSError, StopIteration):
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for p in _tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except (OSError, IndexError):
            pass
    return total


class Server:
    """`mmsae explore RUN` in a subprocess; stopped with SIGINT like a user's Ctrl-C."""

    def __init__(self, run: Path, workers: int = 1, extra: tuple[str, ...] = ()):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        cmd = [
            sys.executable,
            "-m",
            "mmsae.cli.main",
            "explore",
            str(run),
            "--port",
            str(self.port),
            "--no-open",
            *(["--workers", str(workers)] if workers != 1 else []),
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"explorer exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + "/api/summary", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"explorer did not answer in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()


def plan(base: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (kind, url) pairs, kinds in equal shares, parameters drawn from what the server holds."""
    import httpx

    from mmsae.explorer.app import BUCKETS, SORT_KEYS

    with httpx.Client(base_url=base, timeout=60) as c:
        s = c.get("/api/summary").json()
        F, N = s["dict_size"], s["rows"]
        listed = c.get("/api/concepts", params={"limit": 500}).json()["items"]
        names = [x["name"] for x in listed if x["name"]] or ["concept"]
        plots = [p["url"] for p in c.get("/api/plots").json()]
        images = sorted(
            {
                r["image_url"]
                for x in listed[:20]
                for r in c.get(f"/api/concepts/{x['concept']}").json()["top"].get("image", [])
                if r["image_url"]
            }
        )
    rng = random.Random(seed)

    def concepts() -> str:
        p = {
            "sort": rng.choice(SORT_KEYS),
            "order": rng.choice(["asc", "desc"]),
            "offset": rng.randrange(0, F, 50),
            "limit": rng.choice([50, 500]),
        }
        if rng.random() < 0.3:
            p["bucket"] = rng.choice(BUCKETS)
        if rng.random() < 0.3:
            p["q"] = rng.choice(names)[: rng.randint(2, 8)]
        if rng.random() < 0.2:
            p["min_frequency"] = rng.choice([0.001, 0.01])
        return "/api/concepts?" + urlencode(p)

    kinds = {
        "page + static": lambda: rng.choice(["/", "/static/app.js", "/static/app.css"]),
        "summary, plot list": lambda: rng.choice(["/api/summary", "/api/plots"]),
        "concept list": concepts,
        "concept page": lambda: f"/api/concepts/{rng.randrange(F)}?examples={rng.choice([12, 24])}",
        "row page (similar rows)": lambda: f"/api/rows/{rng.randrange(N)}?similar={rng.choice([0, 12, 24])}",
        "search": lambda: "/api/search?" + urlencode({"q": rng.choice(names + ["a purple elephant"])}),
        "plots, images": lambda: rng.choice(plots + images) if plots + images else "/api/summary",
    }
    keys = list(kinds)
    return [(k, kinds[k]()) for k in (keys[i % len(keys)] for i in rng.sample(range(n), n))]


async def hammer(base: str, urls: list[tuple[str, str]], concurrency: int) -> dict:
    """`concurrency` connections, each its own single-connection client (httpx's shared pool spends
    CPU per request that grows with its size, and the load generator shares the machine), each
    opened by one uncounted request first: connection set-up is the load generator's cost."""
    import httpx

    lat: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    todo = iter(urls)
    clients = [
        httpx.AsyncClient(
            base_url=base, limits=httpx.Limits(max_connections=1), timeout=60, verify=False
        )  # plain http: no CA bundle to load per client
        for _ in range(concurrency)
    ]

    async def connection(client):
        for kind, url in todo:
            t = time.perf_counter()
            try:
                r = await client.get(url)
                if not 200 <= r.status_code < 300:
                    errors[f"{r.status_code} {url}"] += 1
            except httpx.HTTPError as exc:
                errors[f"{type(exc).__name__} {url}"] += 1
            lat[kind].append(time.perf_counter() - t)

    try:
        await asyncio.gather(*(c.get("/api/summary") for c in clients))
        t0 = time.perf_counter()
        await asyncio.gather(*(connection(c) for c in clients))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return {"latency": dict(lat), "errors": dict(errors), "wall_s": wall}


def run_load(run: Path, requests: int = 10_000, concurrency: int = 100, workers: int = 1, warmup: int = 200) -> dict:
    """Start the server, warm it up (first touches of the store's pages), load it, stop it."""
    with Server(run, workers) as srv:
        t = time.perf_counter()
        asyncio.run(hammer(srv.base, plan(srv.base, warmup, seed=1), min(concurrency, 10)))
        urls = plan(srv.base, requests)
        cpu, own = cpu_seconds(srv.proc.pid), time.process_time()
        res = asyncio.run(hammer(srv.base, urls, concurrency))
        res["server_cpu_s"], res["client_cpu_s"] = cpu_seconds(srv.proc.pid) - cpu, time.process_time() - own
        res["rss_mib"] = peak_rss_mib(srv.proc.pid)
        res["startup_and_warmup_s"] = time.perf_counter() - t
    res.update(requests=requests, concurrency=concurrency, workers=workers)
    return res


def report(res: dict) -> str:
    q = lambda v, p: 1000 * float(np.percentile(v, p))  # noqa: E731
    every = [x for v in res["latency"].values() for x in v]
    lines = [
        f"{res['requests']:,} requests, {res['concurrency']} concurrent, {res['workers']} worker(s): "
        f"{sum(res['errors'].values())} errors, {res['requests'] / res['wall_s']:.0f} requests/s "
        f"(CPU: server {res['server_cpu_s']:.1f} s, load generator {res['client_cpu_s']:.1f} s, "
        f"wall {res['wall_s']:.1f} s)",
        f"{'kind':<26}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    for kind, v in sorted(res["latency"].items()) + [("all", every)]:
        lines.append(f"{kind:<26}{len(v):>6}{q(v, 50):>9.1f}{q(v, 99):>9.1f}{1000 * max(v):>9.1f}")
    rss = res["rss_mib"]
    lines.append(
        f"server peak RSS (VmHWM): {sum(rss.values()):.0f} MiB over {len(rss)} process(es) "
        f"({', '.join(f'{v:.0f}' for v in rss.values())})"
    )
    for e, n in sorted(res["errors"].items(), key=lambda x: -x[1])[:10]:
        lines.append(f"  error ×{n}: {e}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder to serve (default: the small demo run, built once into --dir)")
    ap.add_argument("--dir", default="/tmp/mmsae-explorer-load")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1, help="server processes (mmsae explore --workers)")
    args = ap.parse_args()
    run = Path(args.run) if args.run else build_run(Path(args.dir))
    print(report(run_load(run, args.requests, args.concurrency, args.workers)))


if __name__ == "__main__":
    main()
