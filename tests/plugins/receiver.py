"""A local HTTP receiver for notifications and pings: what Apprise's json:// and webhook
URLs post, and the GETs of a healthchecks-style ping, recorded in order.

    def test_x(receiver):
        url = f"json://127.0.0.1:{receiver.port}/alerts"
        ...
        [(method, path, body)] = receiver.wait_for(1)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.silent_paths: set[str] = set()     # requests there are read and never answered
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append((self.command, self.path, body))
                    receiver._lock.notify_all()
                if self.path.split("?")[0] in receiver.silent_paths:
                    time.sleep(60)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 20) -> list[tuple[str, str, bytes]]:
        """The first `n` requests, once they arrived."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
