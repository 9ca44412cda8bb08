"""The monthly clean-up: archive the rows that aged out, copy the archives off
the host, check the copies there, and only then delete the rows.

A row leaves the database only once an archive holding it has been read back
here and its copy at the destination has the same sha256; the rows deleted are
exactly the keys that archive holds, so a row written meanwhile is never lost.
The order journal is never archived nor deleted.  The archive format is in
docs/backup.md.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from includes.errors import CrontraderError, SettingError
from includes.runtime import progress
from includes.storage.marketdb import ARCHIVED, table_layout

if TYPE_CHECKING:
    from includes.config import BackupConfig, Config
    from includes.storage.marketdb import MarketDB

log = logging.getLogger(__name__)

RSYNC_EXITS = {11: " (error in file I/O: is the destination full or read-only?)",
               12: " (error in the protocol data stream)", 23: " (partial transfer)",
               30: " (timeout)", 255: " (ssh failed)"}

FORMAT = "crontrader-archive"
VERSION = 1
SUFFIX = ".jsonl.gz"
KEPT = "kept-archives"     # under paths.tmp: archives whose rows are deleted, until found at the destination
RECORD = ("orders", "threads", "state_values", "paper_ledger")   # the trading record's archives (record.py)
DAMAGED = (OSError, EOFError, zlib.error)     # what a truncated or corrupted gzip raises


class BackupError(CrontraderError):
    """An archive could not be written, read, copied or verified: nothing was deleted."""


@dataclass(frozen=True)
class Archive:
    path: Path
    table: str
    month: str
    columns: list[str]
    key: list[str]
    rows: int
    sha256: str                 # of the body: the lines after the header, uncompressed

    @property
    def file_sha256(self) -> str:
        with open(self.path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()


# --- the archive format ---------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON for a column value: Decimals as exact decimal strings."""
    return format(value, "f") if isinstance(value, Decimal) else value


def write_archive(path: Path, table: str, month: str, columns: list[str], key: list[str],
                  rows: Iterable[Sequence[Any]], schema_version: int | None = None) -> Archive:
    """Write rows as gzip'd JSON lines under a header line that counts and hashes them.

    The body is compressed to a side file while it is counted and hashed, then the
    header is written as a first gzip member and the body appended as a second:
    gzip readers see one stream, and nothing is ever held uncompressed.
    """
    body_path = path.with_name(path.name + ".body")
    digest, count = hashlib.sha256(), 0
    try:
        with gzip.open(body_path, "wb") as body:
            for row in rows:
                line = json.dumps([_plain(v) for v in row], separators=(",", ":")).encode() + b"\n"
                digest.update(line)
                body.write(line)
                count += 1
        header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "table": table, "month": month,
                  "columns": columns, "key": key, "rows": count, "sha256": digest.hexdigest(),
                  "schema_version": schema_version,
                  "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        with open(path, "wb") as out, open(body_path, "rb") as body:
            out.write(gzip.compress(json.dumps(header).encode() + b"\n"))
            shutil.copyfileobj(body, out)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise BackupError(f"cannot write archive {path}: {exc.strerror or exc}") from None
    finally:
        body_path.unlink(missing_ok=True)
    return Archive(path, table, month, columns, key, count, header["sha256"])


def _open(path: Path) -> tuple[Any, dict[str, Any]]:
    """The archive opened past its header line, and the header."""
    try:
        f = gzip.open(path, "rb")  # noqa: SIM115 -- handed to the caller, which closes it
    except OSError as exc:
        raise BackupError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(f.readline())
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError(f"{path}: not a {FORMAT} (no header line)")
        if header.get("version") != VERSION:
            raise BackupError(f"{path}: archive version {header.get('version')} is not {VERSION}")
        if header.get("table") not in (*ARCHIVED, *RECORD):
            raise BackupError(f"{path}: table {header.get('table')!r} is not one this job archives")
    except (*DAMAGED, ValueError) as exc:
        f.close()
        raise BackupError(f"{path}: not a readable {FORMAT} ({exc})") from None
    except BackupError:
        f.close()
        raise
    return f, header


def verify_archive(path: Path) -> Archive:
    """Read the whole archive back: its rows must match the header's count and sha256."""
    f, header = _open(path)
    digest, count = hashlib.sha256(), 0
    try:
        with f:
            for line in f:
                digest.update(line)
                count += 1
    except DAMAGED as exc:
        raise BackupError(f"{path}: archive is damaged ({exc})") from None
    if count != header["rows"] or digest.hexdigest() != header["sha256"]:
        raise BackupError(f"{path}: archive is damaged: {count} rows with sha256 {digest.hexdigest()[:12]}..., "
                          f"the header says {header['rows']} with {header['sha256'][:12]}...")
    return Archive(path, header["table"], header["month"], header["columns"], header["key"],
                   header["rows"], header["sha256"])


def archive_rows(path: Path) -> Iterator[list[Any]]:
    """The rows of an archive, as lists in the header's column order."""
    f, _ = _open(path)
    with f:
        for line in f:
            yield json.loads(line)


# --- destinations -----------------------------------------------------------------------------

class LocalDestination:
    """A directory on this host: a mounted disk, a network share."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def copy(self, files: Sequence[Path]) -> None:
        """Each file under a temporary name first: a full disk leaves no half archive behind."""
        for src in files:
            tmp = self.path / f".{src.name}.tmp"
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                with open(src, "rb") as f, open(tmp, "wb") as out:
                    shutil.copyfileobj(f, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path / src.name)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise BackupError(f"backup copy to {self.where} failed: {exc.strerror or exc}") from None

    def checksums(self, names: Sequence[str]) -> dict[str, str]:
        found = {}
        for name in names:
            try:
                with open(self.path / name, "rb") as f:
                    found[name] = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError as exc:
                raise BackupError(f"backup check in {self.where} failed: {exc.strerror or exc}") from None
        return found


class SSHDestination:
    """USER@HOST:PATH, reached by rsync over ssh (BatchMode: cron cannot answer a prompt)."""

    def __init__(self, host: str, path: str, cfg: BackupConfig, key_file: Path | None,
                 known_hosts: Path | None) -> None:
        self.host, self.path = host, path.rstrip("/") or "/"
        self.where = f"{host}:{path}"
        self.timeout = cfg.timeout
        self.ssh = ["ssh", "-p", str(cfg.ssh_port), "-o", "BatchMode=yes",
                    "-o", f"ConnectTimeout={round(cfg.timeout)}",
                    "-o", f"ServerAliveInterval={max(1, round(cfg.timeout / 3))}", "-o", "ServerAliveCountMax=3"]
        if key_file:
            self.ssh += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
        if known_hosts:
            self.ssh += ["-o", f"UserKnownHostsFile={known_hosts}"]

    def _run(self, command: list[str], what: str) -> str:
        """The command's first error line, or its exit status: rsync relays the remote
        side's message over the link, which a failing receiver can close first."""
        try:
            done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise BackupError(f"backup {what} {self.where} failed: {command[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            meaning = RSYNC_EXITS.get(done.returncode, "") if command[0] == "rsync" else ""
            reason = lines[0] if lines else f"{command[0]} exited with status {done.returncode}{meaning}"
            raise BackupError(f"backup {what} {self.where} failed: {reason}")
        return done.stdout

    def _remote(self, *words: str) -> list[str]:
        """An ssh command line: the remote shell sees each word quoted."""
        return [*self.ssh, self.host, " ".join(shlex.quote(w) for w in words)]

    def copy(self, files: Sequence[Path]) -> None:
        """rsync writes to a temporary name and renames: a full disk leaves no half archive."""
        self._run(self._remote("mkdir", "-p", "--", self.path), "copy to")
        self._run(["rsync", "--times", f"--timeout={round(self.timeout)}", "-e", shlex.join(self.ssh),
                   "--", *map(str, files), f"{self.host}:{self.path}/"], "copy to")

    def checksums(self, names: Sequence[str]) -> dict[str, str]:
        """sha256sum run there, on the file as the remote disk holds it: nothing travels back."""
        out = self._run(self._remote("sha256sum", "--", *(f"{self.path}/{n}" for n in names)), "check in")
        found = {}
        for line in out.splitlines():
            digest, _, name = line.partition("  ")
            found[name.rpartition("/")[2]] = digest
        return found


def destination(cfg: Config) -> LocalDestination | SSHDestination:
    """rsync's rule: a colon before the first slash makes HOST:PATH remote."""
    b = cfg.backup
    if b.destination is None:
        raise SettingError("backup.destination", "not set: give USER@HOST:/PATH or a local directory")
    host, colon, path = b.destination.partition(":")
    if colon and "/" not in host:
        if not host or not path:
            raise SettingError("backup.destination", f"{b.destination!r} is not USER@HOST:/PATH")
        key = cfg.path(b.ssh_key_file) if b.ssh_key_file else None
        if key is not None and not os.access(key, os.R_OK):
            raise SettingError("backup.ssh_key_file", f"{key}: no such readable file")
        known = cfg.path(b.known_hosts_file) if b.known_hosts_file else None
        return SSHDestination(host, path, b, key, known)
    return LocalDestination(cfg.path(b.destination))


# --- the job ----------------------------------------------------------------------------------

def month_of(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def plan(db: MarketDB, before: int) -> dict[str, dict[str, int]]:
    """Rows to archive per table and UTC month."""
    result: dict[str, dict[str, int]] = {}
    for table in ARCHIVED:
        months: dict[str, int] = {}
        for day, n in sorted(db.archived_days(table, before).items()):
            month = month_of(day * 86400)
            months[month] = months.get(month, 0) + n
        result[table] = months
    return result


def export(db: MarketDB, before: int, staging: Path, stamp: str,
           planned: dict[str, dict[str, int]]) -> list[Archive]:
    """One verified archive per table and month, in staging/."""
    archives = []
    version = db.schema_version()
    for table, time_column in ARCHIVED.items():
        columns, key = table_layout(table)
        at = columns.index(time_column)
        rows = progress(db.archived_rows(table, before), total=sum(planned[table].values()), desc=table)
        for month, group in groupby(rows, key=lambda row: month_of(row[at])):
            path = staging / f"{table}.{month}.{stamp}{SUFFIX}"
            written = write_archive(path, table, month, columns, key, group, version)
            archive = verify_archive(path)
            if archive != written:
                raise BackupError(f"{path}: reads back differently from what was written")
            log.info("archived %d rows of %s for %s in %s", archive.rows, table, month, path.name)
            archives.append(archive)
    return archives


def _check(dest: LocalDestination | SSHDestination, archives: Sequence[Archive], kept: Path) -> None:
    """Each archive's copy at the destination has the local archive's sha256, now;
    a failure says which archives of deleted rows are kept here meanwhile."""
    try:
        copies = dest.checksums([a.path.name for a in archives])
        for a in archives:
            if copies.get(a.path.name) != a.file_sha256:
                raise BackupError(f"backup check in {dest.where} failed: the copy of {a.path.name} "
                                  f"differs from the archive")
    except BackupError as exc:
        n = len(list(kept.glob(f"*{SUFFIX}"))) if kept.is_dir() else 0
        if n:
            raise BackupError(f"{exc}; {n} archives of deleted rows are kept in {kept} until a run finds "
                              f"them there") from None
        raise


def _keep(archive: Archive, kept: Path) -> Archive:
    """Move a verified archive to kept/ before its rows go: a copy then exists here
    whatever happens to the destination until _release finds it there again."""
    path = kept / archive.path.name
    try:
        kept.mkdir(exist_ok=True)
        os.replace(archive.path, path)
        fd = os.open(kept, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BackupError(f"cannot keep {archive.path.name} in {kept}: {exc.strerror or exc}") from None
    return Archive(path, archive.table, archive.month, archive.columns, archive.key, archive.rows, archive.sha256)


def _release(dest: LocalDestination | SSHDestination, kept: Path) -> None:
    """Remove the kept archives once their copies are found whole at the destination,
    copying them there again first; until then they stay, and the job fails."""
    paths = sorted(kept.glob(f"*{SUFFIX}")) if kept.is_dir() else []
    if not paths:
        return
    archives = [verify_archive(p) for p in paths]
    try:
        _check(dest, archives, kept)
    except BackupError:
        try:
            dest.copy(paths)
        except BackupError as exc:
            raise BackupError(f"{exc}; {len(paths)} archives of deleted rows are kept in {kept} until a run "
                              f"finds them there") from None
        _check(dest, archives, kept)
    for p in paths:
        p.unlink()
    log.info("%d kept archives found whole at %s and removed from %s", len(paths), dest.where, kept)


def run_backup(cfg: Config, dry_run: bool = False, now: int | None = None) -> int:
    """Archive, copy, verify, then delete; returns the number of rows deleted."""
    from includes.storage import open_market_db

    dest = destination(cfg)
    if not dry_run:
        _release(dest, cfg.path(cfg.paths.tmp) / KEPT)     # a previous run's copies, before anything else
    now = int(time.time()) if now is None else now
    before = now - cfg.backup.retention_days * 86400
    cutoff = datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d %H:%M UTC")
    db = open_market_db(cfg)
    try:
        planned = plan(db, before)
        total = sum(n for months in planned.values() for n in months.values())
        if dry_run:
            print(f"dry run: rows older than {cutoff}, and markets unavailable since then, would be archived "
                  f"to {dest.where}, verified there, then deleted; the order journal stays")
            for table, months in planned.items():
                for month, n in months.items():
                    print(f"would archive and delete {n} rows of {table} for {month}")
            print(f"would delete {total} rows in all" if total else "nothing to archive")
            return 0
        if not total:
            log.info("nothing older than %s to archive", cutoff)
            return 0
        tmp = cfg.path(cfg.paths.tmp)
        kept = tmp / KEPT
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp, prefix="backup-") as staging:
            archives = export(db, before, Path(staging), stamp, planned)
            dest.copy([a.path for a in archives])
            _check(dest, archives, kept)
            log.info("%d archives copied to %s and verified there", len(archives), dest.where)
            deleted = 0
            for a in progress(archives, desc="delete"):
                _check(dest, [a], kept)              # it is still there now,
                a = _keep(a, kept)                  # and a verified copy stays here
                at = [a.columns.index(c) for c in a.key]
                n = db.delete_keys(a.table, ([row[i] for i in at] for row in archive_rows(a.path)),
                                   cfg.backup.batch)
                if n != a.rows:
                    log.warning("%s: %d of its %d rows were still in the database", a.path.name, n, a.rows)
                deleted += n
        _release(dest, kept)
        log.info("deleted %d archived rows older than %s (the order journal is kept)", deleted, cutoff)
        return deleted
    finally:
        db.close()


def restore(cfg: Config, paths: Sequence[Path], dry_run: bool = False) -> int:
    """Put the rows of each archive back (upserts: twice is the same as once); returns how many."""
    from includes.storage import open_market_db

    archives = [verify_archive(p) for p in paths]       # all checked before any row is written
    if dry_run:
        for a in archives:
            print(f"would restore {a.rows} rows of {a.table} for {a.month} from {a.path}")
        return 0
    db = open_market_db(cfg)
    try:
        for a in archives:
            db.restore_rows(a.table, a.columns, archive_rows(a.path))
            log.info("restored %d rows of %s for %s from %s", a.rows, a.table, a.month, a.path)
    finally:
        db.close()
    return sum(a.rows for a in archives)
