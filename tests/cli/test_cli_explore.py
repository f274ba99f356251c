"""`mmsae explore`: the user's mistakes end in one line and exit code 2, before any server starts."""

import socket

from mmsae.cli.main import main


def test_explore_errors(demo_run, tmp_path, capsys):
    assert main(["explore", str(tmp_path / "nope"), "--no-open"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["explore", str(tmp_path), "--no-open"]) == 2
    assert "no SAE" in capsys.readouterr().err
    assert main(["explore", str(demo_run), "--port", "70000", "--no-open"]) == 2
    assert "--port" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert main(["explore", str(demo_run), "--port", str(busy), "--no-open"]) == 2
        assert "cannot listen" in capsys.readouterr().err
    assert main(["explore", str(demo_run / "sae-topk"), "--store", str(tmp_path), "--no-open"]) == 2
    assert "not an mmsae store" in capsys.readouterr().err


def test_demo_refuses_a_busy_port_before_training(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["demo", "--size", "small", "--out", str(tmp_path / "d"), "--port", str(s.getsockname()[1])]) == 2
    assert "cannot listen" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_explore_serves_until_stopped(demo_run):
    """The real command in a subprocess: it binds 127.0.0.1, answers the API, and stops on SIGINT."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmsae.cli.main", "explore", str(demo_run), "--port", str(port), "--no-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        summary = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=2) as r:
                    summary = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        assert summary and summary["dict_size"] == 256 and summary["has_images"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert f"http://localhost:{port}/" in out


def test_explore_option_errors(demo_run, capsys):
    assert main(["explore", str(demo_run), "--allow-host", "a b", "--no-open"]) == 2
    assert "--allow-host" in capsys.readouterr().err
    assert main(["explore", str(demo_run), "--workers", "0", "--no-open"]) == 2
    assert "--workers" in capsys.readouterr().err
