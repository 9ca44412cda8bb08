"""clean_and_backup_database: archives verified here and at a real SSH remote before any
row goes, nothing deleted when the copy fails, and a restore that gives every row back."""
from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from includes.backup import SUFFIX, BackupError, archive_rows, restore, run_backup, verify_archive
from includes.config import load_config
from includes.model import Candle, GlobalMetrics, Market, Ticker
from includes.storage.marketdb import ARCHIVED, TABLES, MarketDB
from tests.conftest import ROOT

DAY = 86400
NOW = 1_700_000_000 // 3600 * 3600          # 2023-11-14 22:00 UTC
BEFORE = NOW - 31 * DAY                     # the default retention


def csv_candles(path: Path, end: int) -> list[Candle]:
    """A real series, moved in time so that its last candle opens at `end`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    shift = end - int(rows[-1]["timestamp"])
    return [Candle(int(r["timestamp"]) + shift, D(r["open"]), D(r["high"]), D(r["low"]), D(r["close"]),
                   D(r["volume"])) for r in rows]


def market(symbol: str, status: str = "online", available: bool = True) -> Market:
    base, quote = symbol.split("/")
    return Market(symbol, base, quote, base + quote, status, available, 5, 8, D("0.0001"), D("0.5"))


def fill(db: MarketDB, data: Path) -> None:
    """Ten months of BTC/EUR, ten old days of ETH/EUR, a market delisted 60 days ago, one
    unavailable for 2 days only; tickers, global metrics and journal rows old and new."""
    db.upsert_markets("kraken", [market(s) for s in ("BTC/EUR", "ETH/EUR", "OLD/EUR", "NEW/EUR")], NOW - 100 * DAY)
    db.upsert_markets("kraken", [market("BTC/EUR"), market("ETH/EUR"), market("NEW/EUR")], NOW - 60 * DAY)
    db.upsert_markets("kraken", [market("BTC/EUR"), market("ETH/EUR"), market("NEW/EUR", "cancel_only", False)],
                      NOW - 2 * DAY)
    db.upsert_candles("kraken", "BTC/EUR", 60, csv_candles(data / "fx_EUR_USD_1h.csv", NOW - 3600))
    db.upsert_candles("kraken", "ETH/EUR", 1, csv_candles(data / "bittrex_UNITTEST_BTC_1m.csv", NOW - 40 * DAY))
    db.upsert_candles("kraken", "OLD/EUR", 1, csv_candles(data / "unk_SOL_USD_1m.csv", NOW - 70 * DAY))
    db.upsert_candles("kraken", "NEW/EUR", 1, csv_candles(data / "unk_BTC_USD_1m_20230115.csv", NOW - 3 * DAY))
    for symbol in ("BTC/EUR", "OLD/EUR"):
        db.insert_tickers("kraken", [Ticker(symbol, NOW - h * 3600, D("34000.123456789012"), D("33999.5"),
                                            D("34001"), D("12.5"), None, D("34500"), D("33000"))
                                     for h in range(0, 24 * 50, 6)])
    db.insert_global_metrics("coinmarketcap", [
        GlobalMetrics(NOW - d * DAY, "EUR", D("1234567890123456.75"), D("98765432101.5"), D("52.123456789"), 9001)
        for d in range(60)])
    for ref, at in (("old-buy", NOW - 90 * DAY), ("new-buy", NOW - DAY)):
        db.journal_intent(ref, mode="live", exchange="kraken", market="OLD/EUR", side="buy", thread=1,
                          amount_quote=D(5), at=at)
        db.journal_result(ref, "closed", order_id="O" + ref, filled=D("0.001"), price=D("5000"),
                          cost=D("5"), fee=D("0.013"), at=at + 1)


def snapshot(db: MarketDB) -> dict[str, list[tuple]]:
    return {name: [tuple(r.values()) for r in db._all(f"SELECT * FROM `{name}` ORDER BY "
                                                      + ", ".join(f"`{c}`" for c in t.key))]
            for name, t in TABLES.items() if name != "schema_version"}


def config(tmp_path: Path, db_url: str, **backup) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "storage": {"market_db": db_url, "state": f"sqlite:///{tmp_path / 'state.db'}"},
        "backup": backup}))
    return path


def script(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "clean_and_backup_database.py"), "--config",
                           str(config_path), *args], capture_output=True, text=True, timeout=120)


def filled(url: str, data: Path) -> Iterator[MarketDB]:
    db = MarketDB(url)
    fill(db, data)
    yield db
    db.close()


@pytest.fixture
def filled_db(db_url: str, shared_data: Path) -> Iterator[MarketDB]:
    """On SQLite, then on MariaDB."""
    yield from filled(db_url, shared_data)


@pytest.fixture
def filled_sqlite(sqlite_url: str, shared_data: Path) -> Iterator[MarketDB]:
    """For the script runs: their clock is today's, so every row of fill() is old to them."""
    yield from filled(sqlite_url, shared_data)


@pytest.fixture
def full_disk(tmp_path: Path) -> Path:
    """A 64 KiB tmpfs: too small for the archives."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    # Lazy: sshd's session process may still be closing a file on it when the client returns.
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_archives_go_over_ssh_are_verified_then_deleted_and_restore_gives_every_row_back(
        filled_db, db_url, sshd, tmp_path):
    db = filled_db
    before = snapshot(db)
    remote = tmp_path / "remote" / "crontrader"
    cfg = load_config(config(tmp_path, db_url, **sshd.backup_config(remote)))

    deleted = run_backup(cfg, now=NOW)

    after = snapshot(db)
    archives = sorted(remote.iterdir())
    assert all(a.name.endswith(".20231114T220000Z.jsonl.gz") for a in archives)
    archived = {table: [] for table in ARCHIVED}
    for path in archives:
        a = verify_archive(path)
        assert path.name.startswith(f"{a.table}.{a.month}.")
        archived[a.table] += [tuple(row) for row in archive_rows(path)]
    assert deleted == sum(map(len, archived.values())) == sum(len(before[t]) - len(after[t]) for t in ARCHIVED)
    # What went: old rows and everything of the market delisted 60 days ago; nothing else.
    assert {r[1] for r in archived["markets"]} == {"OLD/EUR"}
    assert all(r[3] < BEFORE or r[1] == "OLD/EUR" for r in archived["candles"])
    assert {r[1] for r in after["candles"]} == {"BTC/EUR", "NEW/EUR"}
    assert all(r[3] >= BEFORE for r in after["candles"])
    assert all(r[2] >= BEFORE and r[1] == "BTC/EUR" for r in after["tickers"])
    assert len(after["global_metrics"]) == 32       # days 0 to 31 back
    assert {r[1] for r in after["markets"]} == {"BTC/EUR", "ETH/EUR", "NEW/EUR"}
    assert after["orders"] == before["orders"]                  # the journal is never deleted
    months = {(verify_archive(p).table, verify_archive(p).month) for p in archives}
    assert ("candles", "2023-01") in months and ("markets", "2023-09") in months

    assert restore(cfg, archives) == deleted
    assert snapshot(db) == before
    assert restore(cfg, archives) == deleted                    # twice is the same as once
    assert snapshot(db) == before
    assert json.dumps([str(v) for v in before["global_metrics"][0]]).count("1234567890123456.75") == 1


def test_an_archive_is_gzip_json_lines_under_a_header(filled_db, db_url, tmp_path):
    cfg = load_config(config(tmp_path, db_url, destination=str(tmp_path / "backups")))
    run_backup(cfg, now=NOW)
    path = next((tmp_path / "backups").glob("global_metrics.*.jsonl.gz"))
    with gzip.open(path, "rt") as f:
        header, *body = f.read().splitlines()
    header = json.loads(header)
    assert header["format"] == "crontrader-archive" and header["version"] == 1
    assert header["columns"] == ["ts", "source", "total_market_cap", "total_volume_24h", "btc_dominance",
                                 "active_cryptocurrencies", "quote"]
    assert header["key"] == ["source", "ts"] and header["rows"] == len(body) > 0
    row = json.loads(body[0])
    assert row[1:] == ["coinmarketcap", "1234567890123456.75" if db_url.startswith("sqlite") else
                       "1234567890123456.750000000000", row[3], row[4], 9001, "EUR"]
    assert D(row[4]) == D("52.123456789")
    assert not list((tmp_path / "tmp").glob("backup-*"))       # the staging directory is gone


def test_dry_run_says_what_it_would_do_and_changes_nothing(filled_sqlite, sqlite_url, tmp_path):
    before = snapshot(filled_sqlite)
    done = script(config(tmp_path, sqlite_url, destination=str(tmp_path / "backups")), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would archive and delete 31 rows of global_metrics for 2023-10\n" in done.stdout
    assert "would archive and delete 1 rows of markets for 2023-11\n" in done.stdout   # NEW/EUR, 2 days then
    everything = sum(len(before[t]) for t in ("candles", "tickers", "global_metrics")) + 2
    assert f"would delete {everything} rows in all" in done.stdout
    assert "to " + str(tmp_path / "backups") in done.stdout
    assert snapshot(filled_sqlite) == before
    assert not (tmp_path / "backups").exists()


def one_line_failure(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_an_unreachable_destination_deletes_nothing(filled_sqlite, sqlite_url, tmp_path, closed_port, sshd):
    before = snapshot(filled_sqlite)
    backup = sshd.backup_config("/srv/backups") | {"ssh_port": closed_port}
    line = one_line_failure(script(config(tmp_path, sqlite_url, **backup)))
    assert f"backup copy to {sshd.user}@127.0.0.1:/srv/backups failed: ssh: connect to host 127.0.0.1 " \
           f"port {closed_port}: Connection refused" in line
    assert snapshot(filled_sqlite) == before
    assert not list((tmp_path / "tmp").glob("backup-*"))


def test_an_unknown_host_key_deletes_nothing(filled_sqlite, sqlite_url, tmp_path, sshd):
    before = snapshot(filled_sqlite)
    (tmp_path / "empty_known_hosts").write_text("")
    backup = sshd.backup_config("/srv/backups") | {"known_hosts_file": str(tmp_path / "empty_known_hosts")}
    line = one_line_failure(script(config(tmp_path, sqlite_url, **backup)))
    assert "Host key verification failed" in line
    assert snapshot(filled_sqlite) == before


@pytest.mark.parametrize("remote", ["ssh", "local"])
def test_a_full_destination_disk_deletes_nothing(filled_sqlite, sqlite_url, tmp_path, sshd, full_disk, remote):
    before = snapshot(filled_sqlite)
    backup = sshd.backup_config(full_disk) if remote == "ssh" else {"destination": str(full_disk)}
    line = one_line_failure(script(config(tmp_path, sqlite_url, **backup)))
    assert "backup copy to" in line
    assert "No space left on device" in line or "rsync exited with status 11 (error in file I/O" in line
    assert snapshot(filled_sqlite) == before
    for path in full_disk.iterdir():                  # the archives that fitted are whole; no half one is left
        assert path.name.endswith(SUFFIX) and verify_archive(path).rows > 0


def test_a_damaged_or_foreign_archive_is_refused_before_any_row_is_written(filled_db, db_url, tmp_path):
    cfg = load_config(config(tmp_path, db_url, destination=str(tmp_path / "backups")))
    run_backup(cfg, now=NOW)
    good = sorted((tmp_path / "backups").glob("candles.*"))
    after = snapshot(filled_db)

    data = gzip.decompress(good[-1].read_bytes()).replace(b"\n[", b"\n[1", 1)
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(gzip.compress(data))
    with pytest.raises(BackupError, match=r"damaged.jsonl.gz: archive is damaged: \d+ rows with sha256"):
        restore(cfg, [*good, damaged])
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(good[0].read_bytes()[:-100])
    with pytest.raises(BackupError, match="truncated.jsonl.gz: archive is damaged"):
        restore(cfg, [truncated])
    with pytest.raises(BackupError, match="config.yaml: not a readable crontrader-archive"):
        restore(cfg, [tmp_path / "config.yaml"])
    assert snapshot(filled_db) == after


def test_restore_from_the_command_line(filled_sqlite, sqlite_url, tmp_path):
    before = snapshot(filled_sqlite)
    cfg_path = config(tmp_path, sqlite_url, destination=str(tmp_path / "backups"))
    run_backup(load_config(cfg_path), now=NOW)
    archives = sorted(str(p) for p in (tmp_path / "backups").iterdir())
    done = script(cfg_path, "--restore", *archives, "--dry-run")
    assert done.returncode == 0 and done.stdout.count("would restore") == len(archives)
    assert snapshot(filled_sqlite) != before
    done = script(cfg_path, "--restore", *archives)
    assert done.returncode == 0, done.stderr
    assert snapshot(filled_sqlite) == before


def test_no_destination_is_a_one_line_config_error(sqlite_url, tmp_path):
    cfg_path = config(tmp_path, sqlite_url)
    done = script(cfg_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"clean_and_backup_database: {cfg_path}: backup.destination: not set: give USER@HOST:/PATH or a local "
        "directory"]


def rows_in(archives: Iterator[Path]) -> dict[str, set[tuple]]:
    """The primary keys each table's archives hold."""
    found: dict[str, set[tuple]] = {}
    for path in archives:
        a = verify_archive(path)
        at = [a.columns.index(c) for c in a.key]
        found.setdefault(a.table, set()).update(tuple(row[i] for i in at) for row in archive_rows(path))
    return found


def keys(db: MarketDB) -> dict[str, set[tuple]]:
    return {name: {tuple(r[c] for c in t.key) for r in db._all(f"SELECT * FROM `{name}`")}
            for name, t in TABLES.items() if name in ARCHIVED}


def test_a_destination_that_vanishes_after_a_check_never_costs_a_row(shared_data, tmp_path, monkeypatch):
    """The destination is removed right after the check that follows the copy, after the first
    check just before a delete, and after the last one: every row that left the DB is then in an
    archive kept here or at the destination, and the next run, the destination back, puts the kept
    ones there.  (Vanishing after the final check is losing the backup disk, beyond any job.)"""
    from includes import backup

    checks = backup.LocalDestination.checksums
    calls, vanish_after = [0], [0]

    def checksums(self, names):
        found = checks(self, names)
        calls[0] += 1
        if calls[0] == vanish_after[0]:
            shutil.rmtree(self.path)
        return found

    monkeypatch.setattr(backup.LocalDestination, "checksums", checksums)

    def attempt(k: int) -> tuple[str, int]:
        work = tmp_path / str(k)
        work.mkdir()
        url = f"sqlite:///{work / 'market.db'}"
        db = MarketDB(url)
        fill(db, shared_data)
        before = keys(db)
        cfg = load_config(config(work, url, destination=str(work / "backups")))
        calls[0], vanish_after[0] = 0, k
        try:
            run_backup(cfg, now=NOW)
            outcome = "ok"
        except BackupError as exc:
            outcome = str(exc)
        made = calls[0]
        kept = sorted((work / "tmp" / backup.KEPT).glob(f"*{SUFFIX}"))
        saved = rows_in(iter([*kept, *(work / "backups").glob(f"*{SUFFIX}")]))
        for table, now in keys(db).items():
            assert before[table] - now <= saved.get(table, set()), (k, table)
        calls[0], vanish_after[0] = 0, 0          # the destination is back
        run_backup(cfg, now=NOW)
        assert not list((work / "tmp" / backup.KEPT).glob(f"*{SUFFIX}"))
        saved = rows_in((work / "backups").glob(f"*{SUFFIX}"))
        for table, now in keys(db).items():
            assert before[table] - now <= saved.get(table, set()), (k, table)
            assert now < before[table], (k, table)      # and the rows did go
        db.close()
        return outcome, made

    outcome, made = attempt(0)
    assert outcome == "ok" and made > 4
    outcome, _ = attempt(1)
    assert outcome.startswith("backup check in ") and "kept in" not in outcome     # nothing deleted yet
    outcome, _ = attempt(2)
    assert "1 archives of deleted rows are kept in" in outcome
    outcome, _ = attempt(made - 1)
    assert outcome == "ok"                        # the last archive is copied there again at the end
