"""The threaded loopback HTTP server that every exchange simulator is built on.

A simulator subclasses `SimulatorServer` and implements two methods:
`method_name(request)`, the API method a request calls (it keys `calls`), and
`handle(request)`, which carries the call out and answers it.  The base adds
what every simulator needs and nothing venue-specific:

- a real `ThreadingHTTPServer` on a free port, in a background thread
  (`start`/`stop`, or use it as a context manager) and its `url`;
- `calls`, a Counter of the API methods requested;
- fault injection with `inject(method, fault, times=1, **params)`.  A fault
  matches a call when its `method` is one of the call's `fault_keys` (by
  default "*" and the method name; a subclass may add other names a call
  answers to).  The base carries out every fault that decides a call's answer:
    delay           seconds=1: wait, then answer normally (client timeouts)
    drop            the connection is closed without an answer; the call is
                    not processed (it never reached the server)
    lost_reply      the call IS processed, then the connection is closed without
                    an answer, or with seconds=N the answer is held N seconds
                    (past the client's timeout);
    error faults    http_500/520 (a Cloudflare-style HTML error page),
                    malformed_json (HTTP 200, a truncated JSON body) and the
                    venue's own ERROR_FAULTS, whose reply `error_reply` gives;
  an error fault takes after=False: the call is not processed (the failure
  sits in front of the server); with after=True it IS processed (an order
  reaches the book) and its answer is replaced, the case a client must settle
  by asking what became of its call.  A subclass may also declare
  SHAPING_FAULTS: faults that change how a call is carried out rather than
  what it answers (a partial fill, an order's life cycle).  dispatch() leaves
  them in the queue; the subclass takes them with take_fault(keys,
  shaping=True) when it carries the call out, so one call can meet a shaping
  fault and an answer fault together;
- a JSON control API under /_sim/ so that another process can drive the
  simulator: GET /_sim/calls, GET|POST /_sim/fault ({"method", "fault",
  "times", ...params}, or {"clear": true}).  Subclasses add their own entries to
  `self.controls`.

One lock (`self.lock`) guards all state; handlers hold it while they work and
never while they sleep.
"""
from __future__ import annotations

import json
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

GENERIC_FAULTS = frozenset({"delay", "drop", "lost_reply", "http_500", "http_520", "malformed_json"})
CONTROL_PREFIX = "/_sim/"

CLOUDFLARE_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><title>api.example.com | {status}: {title}</title></head>
<body>
<div id="cf-error-details">
<h1>{title}</h1> <span>Error code {status}</span>
<p>Visit <a href="https://www.cloudflare.com/">cloudflare.com</a> for more information.</p>
</div>
</body>
</html>
"""
CLOUDFLARE_TITLES = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable",
                     520: "Web server is returning an unknown error", 522: "Connection timed out"}


@dataclass(frozen=True)
class Request:
    method: str                 # HTTP verb
    path: str                   # without the mount prefix and the query string
    target: str                 # the request target as received: path and query, undecoded (what Bittrex signs)
    query: dict[str, str]       # query string, decoded; the last value of a repeated name wins
    headers: Mapping[str, str]
    body: bytes                 # raw, exactly as received (signatures are computed over it)
    client: str                 # the peer's IP address


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    drop: bool = False          # close the connection without answering
    delay: float = 0.0          # hold the answer this many seconds


@dataclass
class Fault:
    method: str                 # API method name, or "*"
    kind: str
    times: int | None           # calls still to affect; None until cleared
    params: dict = field(default_factory=dict)


def json_reply(obj: object, status: int = 200) -> Reply:
    return Reply(status, json.dumps(obj, default=str).encode())


def truthy(value: object) -> bool:
    """A fault or control flag as Python, JSON or a query string may give it."""
    return value is True or (isinstance(value, (int, str)) and str(value).lower() in ("1", "true", "yes"))


def cloudflare_reply(status: int) -> Reply:
    """The HTML page a CDN in front of an exchange sends during an outage."""
    page = CLOUDFLARE_PAGE.format(status=status, title=CLOUDFLARE_TITLES.get(status, "Error"))
    return Reply(status, page.encode(), "text/html; charset=UTF-8")


class SimulatorServer:
    """Base of the exchange simulators (see the module docstring)."""

    ERROR_FAULTS: frozenset[str] = frozenset()      # the venue's own error answers (see error_reply)
    SHAPING_FAULTS: frozenset[str] = frozenset()    # the venue's faults it takes itself (see take_fault)
    MALFORMED_BODY = b'{"error": [], "result": {"'  # a malformed_json answer: the start of a typical reply

    def __init__(self, host: str = "127.0.0.1", port: int = 0, prefix: str = "") -> None:
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self.last_query: dict[str, dict[str, str]] = {}    # per method, its last call's query string
        self.controls: dict[str, Callable[[dict], object]] = {
            "calls": lambda payload: dict(self.calls),
            "fault": self._control_fault,
        }
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._released = threading.Event()     # release_delays() cuts injected delays short
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what a simulator implements ------------------------------------------------
    def method_name(self, request: Request) -> str:
        """The API method `request` calls, as counted in `calls`."""
        return request.path

    def fault_keys(self, request: Request, name: str) -> Collection[str]:
        """What a fault's `method` may be to match `request`, whose method name is `name`."""
        return ("*", name)

    def handle(self, request: Request) -> Reply:
        """Carry the call out and answer it."""
        raise NotImplementedError

    def error_reply(self, fault: Fault) -> Reply:
        """The answer of an error fault: the generic ones here, a subclass's ERROR_FAULTS in its override."""
        if fault.kind == "malformed_json":
            return Reply(200, self.MALFORMED_BODY)
        return cloudflare_reply(int(fault.kind.removeprefix("http_")))

    def server_time(self) -> float:
        """The server's clock, sent in every reply's Date header, as a real server does."""
        return time.time()

    # --- life cycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, no trailing slash: http://127.0.0.1:PORT[/prefix]."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self._server.server_address[1]}{self.prefix}"

    def start(self) -> SimulatorServer:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True        # a handler sleeping in a fault never blocks stop()
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()                # wakes handlers sleeping in wait()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        """Sleep that stop() or release_delays() cuts short."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not (self._stopping.is_set() or self._released.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._released.wait(min(left, 0.05))

    def release_delays(self) -> None:
        """Let every call held by a `delay` fault go on now (a test's way to hold a
        client exactly as long as it needs, whatever the machine's load)."""
        self._released.set()

    # --- faults ---------------------------------------------------------------------
    def inject(self, method: str, fault: str, times: int | None = 1, **params: object) -> None:
        """Make the next `times` calls of `method` ("*": any) fail with `fault` (None: until cleared)."""
        known = GENERIC_FAULTS | self.ERROR_FAULTS | self.SHAPING_FAULTS
        if fault not in known:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(known))}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for ever), not {times}")
        with self.lock:
            self._faults.append(Fault(method, fault, times, dict(params)))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, keys: Collection[str], shaping: bool = False,
                   kinds: Collection[str] | None = None) -> Fault | None:
        """The next fault whose `method` is one of `keys`, counted as used: an answer
        fault, or with `shaping` one of SHAPING_FAULTS (of `kinds` only, when given).
        Call it holding `self.lock`."""
        fault = self.next_fault(keys, shaping, kinds)
        if fault is not None and fault.times is not None:
            fault.times -= 1
            if fault.times == 0:
                self._faults.remove(fault)
        return fault

    def next_fault(self, keys: Collection[str], shaping: bool = False,
                   kinds: Collection[str] | None = None) -> Fault | None:
        """What take_fault would take, left in the queue (a call that may still be refused
        looks before it takes).  Call it holding `self.lock`."""
        for fault in self._faults:
            if (fault.method in keys and (fault.kind in self.SHAPING_FAULTS) == shaping
                    and (kinds is None or fault.kind in kinds)):
                return fault
        return None

    # --- dispatch -------------------------------------------------------------------
    def dispatch(self, request: Request) -> Reply:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        name = self.method_name(request)
        with self.lock:
            self.calls[name] += 1
            self.last_query[name] = request.query
            fault = self.take_fault(self.fault_keys(request, name))
        if fault is None:
            return self.handle(request)
        if fault.kind == "delay":
            self.wait(float(fault.params.get("seconds", 1)))
            return self.handle(request)
        if fault.kind == "drop":
            return Reply(drop=True)
        if fault.kind == "lost_reply":
            reply = self.handle(request)
            if "seconds" in fault.params:
                reply.delay = float(fault.params["seconds"])
            else:
                reply.drop = True
            return reply
        if truthy(fault.params.get("after", False)):
            self.handle(request)                    # carried out; only its answer is lost
        return self.error_reply(fault)

    def _control(self, request: Request) -> Reply:
        name = request.path[len(CONTROL_PREFIX):]
        handler = self.controls.get(name)
        if handler is None:
            return json_reply({"error": f"unknown control {name!r}; known: {', '.join(sorted(self.controls))}"},
                              404)
        try:
            payload = json.loads(request.body or b"{}") if request.method == "POST" else dict(request.query)
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            return json_reply(handler(payload))
        except (ValueError, KeyError, TypeError) as exc:
            return json_reply({"error": f"{type(exc).__name__}: {exc}"}, 400)

    def _control_fault(self, payload: dict) -> object:
        if payload.get("clear"):
            self.clear_faults()
        elif payload:
            params = {k: v for k, v in payload.items() if k not in ("method", "fault", "times")}
            self.inject(payload["method"], payload["fault"], payload.get("times", 1), **params)
        with self.lock:
            return [{"method": f.method, "fault": f.kind, "times": f.times, **f.params} for f in self._faults]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"           # keep-alive, as a requests.Session expects
    disable_nagle_algorithm = True          # headers and body go out in two writes: no 40 ms stall
    server_version = "cloudflare"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        sim: SimulatorServer = self.server.simulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        path = url.path
        if sim.prefix and not (path == sim.prefix or path.startswith(sim.prefix + "/")):
            reply = Reply(404, b"not found", "text/plain")
        else:
            request = Request(self.command, path[len(sim.prefix):], self.path,
                              dict(parse_qsl(url.query, keep_blank_values=True)), self.headers, body,
                              self.client_address[0])
            try:
                reply = sim.dispatch(request)
            except Exception:               # a simulator bug: say so loudly, and to the client
                traceback.print_exc()
                reply = json_reply({"error": ["EGeneral:Internal error"]}, 500)
        if reply.delay:
            sim.wait(reply.delay)
        if reply.drop:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:                     # the client gave up (a delayed reply): nothing to do
            self.close_connection = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        return super().date_time_string(self.server.simulator.server_time() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: tests read `calls`, not an access log."""
