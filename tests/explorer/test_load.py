"""Many clients at once against the real server (`mmsae explore` in a subprocess, as
benchmarks/explorer_load.py runs it): every answer is a 2xx. No latency bound: machines are noisy."""

import asyncio
import importlib.util
from pathlib import Path

import httpx

_spec = importlib.util.spec_from_file_location(
    "explorer_load", Path(__file__).parents[2] / "benchmarks" / "explorer_load.py"
)
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)


def test_concurrent_requests_over_every_endpoint(demo_run):
    res = load.run_load(demo_run, requests=300, concurrency=20, warmup=50)
    assert res["errors"] == {}
    assert sum(len(v) for v in res["latency"].values()) == 300 and len(res["latency"]) == 7  # every kind of GET
    assert res["rss_mib"] and "errors" in load.report(res)


def test_several_workers_with_an_allowed_host(demo_run):
    with load.Server(demo_run, workers=2, extra=("--allow-host", "explorer.lan")) as srv:
        res = asyncio.run(load.hammer(srv.base, load.plan(srv.base, 100), 10))
        assert res["errors"] == {}
        assert httpx.get(srv.base + "/api/summary", headers={"host": f"explorer.lan:{srv.port}"}).status_code == 200
        r = httpx.get(srv.base + "/api/summary", headers={"host": f"evil.example:{srv.port}"})
        assert r.status_code == 403 and "--allow-host" in r.text
        assert len(load.peak_rss_mib(srv.proc.pid)) >= 3  # the supervisor and its two workers
