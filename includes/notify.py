"""Telling the owner without being asked: alerts through Apprise and the jobs' pings.

Apprise (one library for ~100 services: ntfy, Telegram, e-mail, Discord, any
webhook) is imported only when a message is due: it costs 0.13 s.  Messages and
pings leave in a background thread while the job works; at its end the job waits
at most `notify.timeout` seconds for them, then exits regardless.  A notification
or ping that fails is logged, and never changes how the job ended.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from includes.errors import SettingError, cause
from includes.redaction import redact, register_secret

if TYPE_CHECKING:
    from includes.config import Config, NotifyConfig

log = logging.getLogger(__name__)


class Notifier:
    """The alerts and the ping of one job run."""

    def __init__(self, cfg: NotifyConfig, job: str) -> None:
        self.cfg = cfg
        self.job = job
        self.ping_url: str | None = getattr(cfg.ping, job, None)
        self._threads: list[threading.Thread] = []
        self._deadline: float | None = None
        register_secret(*(t.url for t in cfg.urls), self.ping_url)   # tokens live in these URLs
        if cfg.urls and importlib.util.find_spec("apprise") is None:   # else every alert would fail unheard
            raise SettingError("notify.urls", "needs Apprise: .venv/bin/pip install -r requirements.txt")

    def wants(self, event: str) -> bool:
        return any(event in t.events for t in self.cfg.urls)

    def send(self, event: str, title: str, body: str) -> None:
        """`body` to every URL that takes `event`, in the background."""
        urls = [t.url for t in self.cfg.urls if event in t.events]
        if urls:
            self._background(_notify, urls, f"crontrader {self.job}: {title}", body, event)

    def ping(self, suffix: str = "") -> None:
        """The healthchecks convention: URL/start, URL (success), URL/fail."""
        if self.ping_url:
            self._background(_ping, f"{self.ping_url}{suffix}", self.cfg.timeout)

    def wait(self) -> None:
        """Let what is in flight finish: notify.timeout seconds at most in all, from the first wait."""
        import time

        if self._deadline is None:
            self._deadline = time.monotonic() + self.cfg.timeout
        for thread in self._threads:
            thread.join(max(0.0, self._deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("a notification or ping still in flight after %g s: left behind", self.cfg.timeout)
                return

    def _background(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)


def _notify(urls: list[str], title: str, body: str, event: str) -> None:
    try:
        import apprise

        sender = apprise.Apprise()
        for url in urls:
            if not sender.add(url):
                log.warning("notification URL %s is not one Apprise knows", redact(url).split("://")[0] + "://...")
        if sender and not sender.notify(title=title, body=body):
            log.warning("%s notification not delivered to every URL (Apprise's log says why)", event)
    except Exception as exc:  # noqa: BLE001 - an alert must never fail the job it reports on
        log.warning("%s notification failed: %s", event, redact(cause(exc)))


def _ping(url: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            reply.read(1024)
    except Exception as exc:  # noqa: BLE001 - a dead man's switch that cannot be reached is not the job's failure
        log.warning("ping %s failed: %s", redact(url), redact(cause(exc)))


def switches(cfg: Config, stop: bool, dry_run: bool) -> list[str]:
    """What changed in the stop and dry-run files since the agent last looked (tmp/switches.json)."""
    from includes.files import write_atomic

    path = cfg.path(cfg.paths.tmp) / "switches.json"
    now = {"stop": stop, "dry_run": dry_run}
    try:
        before = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        before = None
    if before == now:
        return []
    write_atomic(path, json.dumps(now))
    if before is None:
        return []   # the first run sets the baseline
    said = {("stop", True): "the stop file appeared: all trading halted",
            ("stop", False): "the stop file is gone: trading resumes",
            ("dry_run", True): "dry-run is on: orders are simulated",
            ("dry_run", False): "dry-run is off: orders are LIVE"}
    return [said[key, value] for key, value in now.items() if before.get(key) != value]
