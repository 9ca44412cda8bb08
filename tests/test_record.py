"""The trading record leaves the Pi: clean_and_backup_database.py --state-only copies the
journal, the threads and values of both modes and the paper ledger to the destination and
verifies them there; after the stores are lost, --restore brings back identical rows and
threads.  On SQLite, and on MariaDB + Redis."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest
import redis

from includes.agent import run_agent
from includes.model import MODES
from includes.storage import open_market_db, open_state
from tests.conftest import REDIS_URL, ROOT
from tests.plugins.agent import CURRENCIES, move
from tests.plugins.sshd import SSHD


def script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "clean_and_backup_database.py"), "--config",
                           str(tmp_path / "config.yaml"), *args], capture_output=True, text=True, timeout=120)


def everything(cfg) -> dict:
    """The whole trading record as the stores hold it."""
    db = open_market_db(cfg)
    found = {"journal": {m: db.journal(m, agent=cfg.storage.namespace) for m in MODES}}
    db.close()
    for mode in MODES:
        store = open_state(cfg, mode)
        found[mode] = (store.threads(), {k: store.get_value(k) for k in store.keys() if not k.startswith(  # noqa: SIM118 -- StateStore.keys()
            ("thread:", "lock:"))})
        store.close()
    ledger = cfg.path(cfg.paths.tmp) / f"paper-{cfg.storage.namespace}.json"
    found["ledger"] = ledger.read_text()
    return found


@pytest.fixture(params=["sqlite", "mariadb+redis"])
def stores(request, tmp_path):
    """(market_db, state, namespace, wipe): wipe() loses them, as a dead SD card would."""
    if request.param == "sqlite":
        def wipe() -> None:
            for name in ("market.db", "state.db"):
                for path in tmp_path.glob(name + "*"):
                    path.unlink()
        yield f"sqlite:///{tmp_path / 'market.db'}", f"sqlite:///{tmp_path / 'state.db'}", "crontrader", wipe
        return
    url = request.getfixturevalue("mariadb_url")
    namespace = request.getfixturevalue("redis_namespace")
    database = url.rpartition("/")[2]

    def wipe() -> None:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{database}`")
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        conn.close()
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(*client.scan_iter(f"{namespace}:*"))
        client.close()
    yield url, REDIS_URL, namespace, wipe


def test_the_record_round_trips_through_the_destination(tmp_path, job_config, rising, stores):
    market_db, state, namespace, wipe = stores
    backups = tmp_path / "backups"
    sections = dict(market_db=market_db, state=state, storage={"namespace": namespace},
                    backup={"destination": str(backups)})
    dry = job_config(trading={"currencies": CURRENCIES, "max_threads": 3, "sell_percent": 3}, **sections)
    run_agent(dry)
    move(rising, "BTC", "1.05")
    assert run_agent(dry).sold                                 # a sale and a re-buy in the dry journal
    live = job_config(trading={"currencies": CURRENCIES, "max_threads": 2, "dry_run": False}, **sections)
    assert run_agent(live).bought                              # and live orders beside them
    before = everything(live)
    assert all(before["journal"].values()) and before["live"][0] and before["dry"][0]

    done = script(tmp_path, "--state-only")
    assert done.returncode == 0, done.stderr
    copies = sorted(backups.iterdir())
    assert [p.name.split(".")[1] for p in copies] == ["orders", "paper_ledger", "state_values", "threads"]

    wipe()
    (tmp_path / "tmp" / f"paper-{namespace}.json").unlink()
    done = script(tmp_path, "--restore", *map(str, copies))
    assert done.returncode == 0, done.stderr
    assert everything(live) == before

    again = script(tmp_path, "--restore", *map(str, copies))      # onto stores that hold a record: refused
    assert again.returncode == 1
    [line] = again.stderr.splitlines()
    assert line.startswith("clean_and_backup_database: the trading record is restored onto empty stores only: "
                           "live journal, dry journal, ")
    assert everything(live) == before


@pytest.mark.skipif(not os.access(SSHD, os.X_OK), reason=f"{SSHD} is absent (Debian package openssh-server, "
                                                             "tests/setup.sh): no SSH destination to copy to")
def test_the_record_goes_over_ssh_is_verified_there_and_restores(tmp_path, job_config, rising, sshd):
    """backup.destination USER@HOST:/PATH: the same copy-then-verify as the archives, through a real sshd."""
    remote = tmp_path / "remote" / "crontrader"
    cfg = job_config(trading={"currencies": CURRENCIES, "max_threads": 2}, backup=sshd.backup_config(remote))
    assert run_agent(cfg).bought
    before = everything(cfg)

    done = script(tmp_path, "--state-only")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    copies = sorted(remote.iterdir())
    assert [p.name.split(".")[1] for p in copies] == ["orders", "paper_ledger", "state_values", "threads"]

    for path in [*tmp_path.glob("market.db*"), *tmp_path.glob("state.db*"), tmp_path / "tmp" / "paper-crontrader.json"]:
        path.unlink()
    done = script(tmp_path, "--restore", *map(str, copies))
    assert done.returncode == 0, done.stderr
    assert everything(cfg) == before
