"""Headless Chromium (Debian's package) for looking at the pages the project writes.

    chromium.dump_dom(url)               # the DOM once the page has loaded, as HTML
    chromium.screenshot(url, path)       # a PNG of the page

Every run gets a new, empty profile and the flags that keep it off the network.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Chromium:
    profiles: Path

    def run(self, *args: str) -> str:
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.profiles)
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90)
        if done.returncode != 0:
            pytest.fail(f"chromium exited with status {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def dump_dom(self, url: str, *flags: str) -> str:
        return self.run(*flags, "--dump-dom", url)

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 2400) -> Path:
        self.run(f"--screenshot={path}", f"--window-size={width},{height}", "--hide-scrollbars", url)
        return path


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run tests/setup.sh (Debian package chromium)")
    profiles = tmp_path / "chromium"
    profiles.mkdir()
    return Chromium(profiles)
