"""A running ``medfed demo`` for the tests that need a hub.

``MEDFED_DEMO_JSON`` points at the ``demo.json`` of a demo already running; otherwise
``MEDFED_BIN`` names a ``medfed`` binary and the fixture starts ``medfed demo`` in a scratch
directory for the session (and stops it after). With neither, those tests say they skipped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if path := os.environ.get("MEDFED_DEMO_JSON"):
        info = json.loads(Path(path).read_text())
        info["path"] = path
        yield info
        return
    binary = os.environ.get("MEDFED_BIN")
    if not binary:
        pytest.skip("set MEDFED_BIN (a medfed binary) or MEDFED_DEMO_JSON (a running demo) to test against a hub")
    workdir = tmp_path_factory.mktemp("demo")
    demo_json = workdir / "net" / "demo.json"
    log = open(workdir / "demo.log", "w")
    proc = subprocess.Popen(
        [binary, "demo", "--dir", str(workdir / "net"), "--patients-per-site", "400"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        # demo.json appears once the network is up; the examples then run, then it serves.
        while not (demo_json.exists() and "keeps running" in (workdir / "demo.log").read_text()):
            if proc.poll() is not None:
                raise RuntimeError(f"medfed demo exited: {(workdir / 'demo.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("medfed demo did not come up in 10 minutes")
            time.sleep(0.5)
        info = json.loads(demo_json.read_text())
        info["path"] = str(demo_json)
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
