"""Faults of this host's own files: a read-only or full disk, a corrupted paper account or
nonce file, a directory where a file should be.  Each is one stderr line naming the file
and what to do, exit 2 (a path or a permission) or 1, never a traceback."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from includes.errors import StorageError
from includes.platforms import make_platform
from includes.platforms.paper import PaperPlatform
from tests.conftest import ROOT

DOWN = "mysql+pymysql://root@127.0.0.1:9/crontrader"       # nothing listens on port 9


def run(script: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


def one_line(done: subprocess.CompletedProcess, status: int) -> str:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator:
    """mount(name, options): a small tmpfs of the test's own (needs root), unmounted after."""
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


def fill_up(path: Path, leave: int = 0) -> None:
    """Fill the disk of `path`, then free `leave` bytes of it."""
    with open(path / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        f.truncate(max(0, f.tell() - leave))


def test_a_read_only_log_directory_is_one_line_exit_2(tmp_path, job_config, mount):
    log = mount("log", "ro,size=64k")
    job_config(paths={"log": str(log)})
    line = one_line(run("get_api_data", tmp_path / "config.yaml"), 2)
    assert line == (f"get_api_data: cannot log: {log}/get_api_data.log: Read-only file system: make it writable "
                    f"by this user, or set paths.log in the config")


def test_a_log_path_that_is_a_file_is_one_line_exit_2(tmp_path, job_config):
    job_config(paths={"log": "/dev/null"})
    line = one_line(run("get_api_data", tmp_path / "config.yaml"), 2)
    assert line.startswith("get_api_data: cannot log: /dev/null: File exists: set paths.log in the config")


def test_a_full_log_disk_is_one_line_and_the_job_still_runs(tmp_path, job_config, mount):
    log = mount("log", "size=64k")
    fill_up(log)
    job_config(paths={"log": str(log)})
    line = one_line(run("get_api_data", tmp_path / "config.yaml"), 0)
    assert line == (f"get_api_data: log lost: {log}/get_api_data.log: No space left on device: the disk is full; "
                    f"free some space on it")


@pytest.mark.parametrize("room", [0, 16384])
def test_a_full_tmp_disk_while_the_db_is_down_says_so(tmp_path, job_config, mount, room):
    """No room even for the run's lock file, or room for it and not for the spooled candles."""
    tmp = mount("tmp", "size=64k")
    job_config(market_db=DOWN, paths={"tmp": str(tmp)})
    fill_up(tmp, leave=room)
    line = one_line(run("get_api_data", tmp_path / "config.yaml"), 1)
    assert line.startswith(f"get_api_data: {tmp}/{'spool/' if room else 'get_api_data.lock'}") and line.endswith(
        "No space left on device: the disk is full; free some space on it")
    assert not list(tmp.rglob("*.tmp"))                # no half file left behind


def test_a_lock_file_that_is_a_directory_is_one_line_exit_2(tmp_path, job_config):
    job_config()
    (tmp_path / "tmp" / "get_api_data.lock").mkdir(parents=True)
    line = one_line(run("get_api_data", tmp_path / "config.yaml"), 2)
    assert line == (f"get_api_data: {tmp_path}/tmp/get_api_data.lock: Is a directory: check the paths in the "
                    f"config")


PAPER_DAMAGE = {
    "not JSON": "{\"balances\": {",
    "empty": "",
    "a list": "[1, 2]",
    "no balances": "{\"orders\": {}}",
    "a balance that is no number": "{\"balances\": {\"EUR\": \"lots\"}, \"orders\": {}}",
    "an order missing fields": "{\"balances\": {\"EUR\": \"5\"}, \"orders\": {\"r\": {\"ref\": \"r\"}}}",
    "an infinite balance": "{\"balances\": {\"EUR\": \"Infinity\"}, \"orders\": {}}",
}


@pytest.mark.parametrize("damage", PAPER_DAMAGE)
def test_a_corrupted_paper_account_says_so_and_how_to_start_anew(kraken_venue, tmp_path, damage):
    ledger = tmp_path / "paper.json"
    ledger.write_text(PAPER_DAMAGE[damage])
    with pytest.raises(StorageError) as caught:
        PaperPlatform(kraken_venue.platform(), ledger, Decimal(100))
    message = str(caught.value)
    assert message.startswith(f"{ledger}: the paper account is corrupted (")
    assert message.endswith(f"move it aside to start a new one from trading.dry_run_balance: mv {ledger} {ledger}.bad")


def test_the_agent_stops_on_a_corrupted_paper_account_with_one_line(tmp_path, job_config):
    job_config()
    ledger = tmp_path / "tmp" / "paper-crontrader.json"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text("{\"balances\": [")
    line = one_line(run("trade_agent", tmp_path / "config.yaml"), 1)
    assert line.startswith(f"trade_agent: {ledger}: the paper account is corrupted")


@pytest.mark.parametrize("damage", ["garbage \x01\x02", "[1]", "{\"nonce\": \"abc\"}", "{\"counter\": true}",
                                    "{\"at\": 1e999}", "{\"nonce\": null}"])
def test_a_corrupted_nonce_file_is_named_never_taken_for_a_bad_reply(tmp_path, job_config, damage):
    platform = make_platform(job_config(), live=True)
    platform.get_account_info()
    [nonce_file] = (tmp_path / "tmp").glob("kraken-*.nonce")
    nonce_file.write_text(damage)
    with pytest.raises(StorageError) as caught:
        platform.get_account_info()
    message = str(caught.value)
    assert message.startswith(f"{nonce_file}: the API key's nonce file is corrupted (") and "\n" not in message
    assert message.endswith("); delete it: the next call starts a new one from the clock")
    nonce_file.unlink()                                  # the fix it gives works
    assert platform.get_account_info().balance("EUR") > 0
