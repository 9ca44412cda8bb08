"""A MariaDB and a Redis of the test's own, on ports of their own, that a test may hang
(SIGSTOP) without touching the shared servers every other test uses.

    with private_mariadb.hung():      # the server process is stopped, its socket still listens
        ...                           # connects are accepted by the kernel and never answered
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class PrivateServer:
    url: str
    process: subprocess.Popen

    @contextmanager
    def hung(self) -> Iterator[None]:
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


def _start(command: list[str], port: int, url: str, log: Path) -> Iterator[PrivateServer]:
    binary = shutil.which(command[0])
    if binary is None:
        pytest.skip(f"{command[0]} is not installed")
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, *command[1:]], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield PrivateServer(url, process)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def private_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    """mariadbd on an empty data directory, no grant tables: root without a password."""
    home = tmp_path_factory.mktemp("mariadb")
    (home / "data").mkdir()
    port = _free_port()
    server = _start(["mariadbd", "--no-defaults", f"--datadir={home / 'data'}", "--skip-grant-tables",
                     f"--port={port}", "--bind-address=127.0.0.1", f"--socket={home / 'sock'}",
                     f"--pid-file={home / 'pid'}", "--user=root", "--skip-log-bin",
                     "--innodb-buffer-pool-size=8M"], port, "", home / "log")
    for s in server:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
        conn.cursor().execute("CREATE DATABASE IF NOT EXISTS crontrader")
        conn.close()
        s.url = f"mysql+pymysql://root@127.0.0.1:{port}/crontrader"
        yield s


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    home = tmp_path_factory.mktemp("redis")
    port = _free_port()
    yield from _start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(home)], port, f"redis://127.0.0.1:{port}/0",
                      home / "log")
