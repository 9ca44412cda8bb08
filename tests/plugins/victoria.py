"""A real VictoriaMetrics server for the time-series tests, one per session.

Debian's `victoria-metrics` package provides it (tests/setup.sh installs it).
It listens on a free loopback port with a throw-away data directory; tests
share it, so each one writes under tag values of its own (a unique exchange).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = "victoria-metrics"
START_TIMEOUT = 20.0   # seconds for /health to answer
QUERY_TIMEOUT = 5.0    # seconds for written points to become searchable


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]               # "__name__" holds the metric: measurement_field
    points: list[tuple[float, float]]    # (unix seconds, value), oldest first


class VictoriaMetrics:
    def __init__(self, url: str) -> None:
        self.url = url

    def series(self, selector: str, count: int = 1) -> list[Series]:
        """Raw samples of the series matching a PromQL `selector`, e.g. '{exchange="x"}'.

        Waits (boundedly) until `count` series are searchable, then returns what there is.
        /api/v1/export gives every raw sample with its exact timestamp, unlike /api/v1/query.
        """
        deadline = time.monotonic() + QUERY_TIMEOUT
        while True:
            self._get("/internal/force_flush")
            query = urllib.parse.urlencode({"match[]": selector})
            lines = self._get(f"/api/v1/export?{query}").splitlines()
            found = [json.loads(line) for line in lines if line.strip()]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return sorted((Series(s["metric"], [(ts / 1000, v) for ts, v in zip(s["timestamps"], s["values"], strict=True)])
                       for s in found), key=lambda s: sorted(s.labels.items()))

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=QUERY_TIMEOUT) as reply:
            return reply.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(binary: str, data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start the server and wait for /health; a port taken meanwhile means another try."""
    for _ in range(3):
        url = f"http://127.0.0.1:{_free_port()}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"-httpListenAddr={url.removeprefix('http://')}", f"-storageDataPath={data}",
                 "-retentionPeriod=100y",   # the tests write real candles from 2019
                 "-loggerLevel=WARN"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as reply:
                    if reply.status == 200:
                        return proc, url
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        _stop(proc)
        if "address already in use" not in log.read_text(errors="replace"):
            break
    pytest.fail(f"{binary} did not start on {url}; its log ({log}):\n{log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A running VictoriaMetrics, stopped at the end of the session."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.fail(f"{BINARY} is not installed: run tests/setup.sh (it installs the Debian package)")
    root = tmp_path_factory.mktemp("victoria")
    proc, url = _start(binary, root / "data", root / "victoria.log")
    yield VictoriaMetrics(url)
    _stop(proc)
