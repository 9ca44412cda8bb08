"""The hand-written dialect layer under the market DB: MySQL/MariaDB through PyMySQL, or SQLite.

Plain DB-API rather than SQLAlchemy: cron starts a job every minute on a Pi, and
importing SQLAlchemy cost each start some 0.2 s and 10 MB before its first statement.
What differs between the two dialects here is small and all in this module: the
placeholder (SQL is written once with %s; sqlite3 gets ?), a few column types
(Kind), how a connection is opened and its errors read.  PyMySQL is imported only
when a MySQL URL is opened.

Identifiers go into SQL through quote() only: backticks, which both dialects accept
(`interval` is reserved in MySQL).

Statements are traced at DEBUG on the logger includes.storage.sql (the scripts'
--verbose): the statement and its duration, never its parameters, which may hold
secrets.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from includes.errors import StorageError, StorageRefused, cause
from includes.redaction import masked
from includes.storage import SQLITE_REFUSED

log = logging.getLogger(__name__)

BATCH = 10_000                      # rows per statement: ~1.2 MB of SQL, below any max_allowed_packet
FETCH = 256                         # rows decoded at a time: what a streamed read holds
LOST = (2002, 2003, 2006, 2013)     # MySQL client errors: no server there, or the connection broke
REFUSED = (1044, 1045, 1049)        # MySQL: access denied (to the database, for the user), unknown database

# The pymysql.connect options a URL may set (?name=value), documented at
# https://pymysql.readthedocs.io/en/latest/modules/connections.html.  Not those set here
# (user, password, host, port, database, autocommit, client_flag) nor those taking Python
# objects (conv, cursorclass, ssl, auth_plugin_map): a URL cannot spell them.
URL_OPTIONS = (
    "unix_socket", "charset", "collation", "sql_mode", "read_default_file", "read_default_group",
    "init_command", "connect_timeout", "read_timeout", "write_timeout", "local_infile",
    "max_allowed_packet", "defer_connect", "bind_address", "binary_prefix", "program_name",
    "server_public_key", "compress", "named_pipe", "use_unicode",
    "ssl_ca", "ssl_cert", "ssl_key", "ssl_key_password", "ssl_disabled", "ssl_verify_cert",
    "ssl_verify_identity",
)


class DatabaseUnreachable(StorageError):
    """The server could not be reached or dropped the connection: the rows may be spooled."""


def quote(name: str) -> str:
    """An identifier as SQL: in backticks, a backtick in it doubled (both dialects read it so)."""
    return "`" + name.replace("`", "``") + "`"


def names(columns: Iterable[str]) -> str:
    return ", ".join(map(quote, columns))


def marks(n: int) -> str:
    return ", ".join(["%s"] * n)


# --- column kinds --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Kind:
    """A column type as each dialect spells it."""
    mysql: str
    sqlite: str

    def render(self, mysql: bool) -> str:
        return self.mysql if mysql else self.sqlite


# An exact decimal with 18 digits before the point (market caps) and 12 after (tiny prices);
# SQLite keeps it as decimal text, as its NUMERIC would keep 15 digits only.
AMOUNT = Kind("DECIMAL(30, 12)", "VARCHAR(40)")
BIGINT = Kind("BIGINT", "BIGINT")
INTEGER = Kind("INTEGER", "INTEGER")
BOOLEAN = Kind("BOOLEAN", "BOOLEAN")
DOUBLE = Kind("DOUBLE", "DOUBLE")
TEXT = Kind("TEXT", "TEXT")


def varchar(n: int) -> Kind:
    return Kind(f"VARCHAR({n})", f"VARCHAR({n})")


def ascii_name(n: int) -> Kind:
    """Exchange, market and currency names: ASCII and case-sensitive on MySQL, whose utf8mb4
    keys would be larger and slower to compare."""
    return Kind(f"VARCHAR({n}) CHARACTER SET ascii COLLATE ascii_bin", f"VARCHAR({n})")


@dataclass(frozen=True, slots=True)
class Column:
    """A column's kind, whether it may be NULL, and its default (an SQL literal)."""
    kind: Kind
    null: bool = False
    default: str | None = None

    def render(self, mysql: bool) -> str:
        sql = self.kind.render(mysql) + ("" if self.null else " NOT NULL")
        return sql if self.default is None else f"{sql} DEFAULT {self.default}"


class Table:
    """A table: its columns in order with their kinds, and its primary key."""

    def __init__(self, name: str, types: dict[str, Column], key: tuple[str, ...] = ()) -> None:
        self.name = name
        self.types = types
        self.key = key

    @property
    def columns(self) -> list[str]:
        return list(self.types)

    @property
    def amounts(self) -> set[str]:
        return {c for c, column in self.types.items() if column.kind == AMOUNT}

    def ddl(self, mysql: bool) -> str:
        lines = [f"{quote(c)} {column.render(mysql)}" for c, column in self.types.items()]
        if self.key:
            lines.append(f"PRIMARY KEY ({names(self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n    " + ",\n    ".join(lines) + "\n)"


# --- statements ---------------------------------------------------------------------------

class Cursor:
    """A DB-API cursor taking the SQL written once, with %s placeholders, on either driver;
    rows come back with amounts (the columns named in `amounts`) as Decimal and `available` as bool."""

    def __init__(self, cursor: Any, mysql: bool, amounts: frozenset[str] | set[str] = frozenset()) -> None:
        self.cursor = cursor
        self.mysql = mysql
        self.amounts = amounts

    def sql(self, sql: str) -> str:
        return sql if self.mysql else sql.replace("%s", "?")

    def params(self, params: Sequence[Any]) -> Sequence[Any]:
        """PyMySQL writes a Decimal exactly; sqlite3 takes none, so amounts go in as decimal text."""
        if self.mysql:
            return params
        return [format(v, "f") if isinstance(v, Decimal) else v for v in params]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it matched (FOUND_ROWS on MySQL: not only those it changed)."""
        with trace(sql):
            self.cursor.execute(self.sql(sql), self.params(params))
        return self.cursor.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """PyMySQL sends an INSERT ... VALUES run this way as multi-row statements."""
        with trace(sql):
            self.cursor.executemany(self.sql(sql), rows if self.mysql else map(self.params, rows))

    def fetch(self) -> Iterator[tuple]:
        """The rows of the last query, FETCH at a time (an unbuffered cursor streams them)."""
        decode = decoder([d[0] for d in self.cursor.description], self.mysql, self.amounts)
        while rows := self.cursor.fetchmany(FETCH):
            yield from map(decode, rows)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.execute(sql, params)
        return list(self.fetch())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        columns = [d[0] for d in self.cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in self.fetch()]

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        rows = self.tuples(sql, params)
        return rows[0][0] if rows else None


@contextmanager
def trace(sql: str) -> Iterator[None]:
    """Log the statement and its duration at DEBUG (--verbose); its parameters never."""
    if not log.isEnabledFor(logging.DEBUG):
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        shown = " ".join(sql.split())
        log.debug("%.1f ms %s", (time.perf_counter() - start) * 1000,
                  shown if len(shown) <= 500 else shown[:500] + "...")


def decoder(columns: Sequence[str], mysql: bool, amounts: frozenset[str] | set[str]
            ) -> Callable[[Sequence[Any]], tuple]:
    """Row -> tuple, amounts as Decimal (SQLite keeps them as text; PyMySQL gives Decimals) and
    `available` as bool (a tinyint or integer in the database)."""
    converters = [bool if n == "available" else Decimal if n in amounts and not mysql else None for n in columns]
    if not any(converters):
        return tuple

    def decode(row: Sequence[Any]) -> tuple:
        return tuple(v if f is None or v is None else f(v) for f, v in zip(converters, row, strict=True))
    return decode


def batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, n)):
        yield batch


# --- connections --------------------------------------------------------------------------

def mysql_args(url: str, timeout: float = 20.0) -> dict[str, Any]:
    """pymysql.connect's arguments for mysql+pymysql://USER:PASS@HOST[:PORT]/DB[?OPTION=VALUE...].

    Parsed as SQLAlchemy did, so that URLs that worked keep working: the password may
    hold / ? or #, an @ in it is written %40, and the options (URL_OPTIONS) go to the
    driver as they are.  Raises ValueError for a malformed URL or an option not accepted.
    """
    from urllib.parse import parse_qsl, unquote

    from pymysql.constants import CLIENT

    m = re.fullmatch(r"mysql\+pymysql://(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
                     r"(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]*))(?::(?P<port>[^/?]*))?"
                     r"/(?P<database>[^?]+)(?:\?(?P<options>.*))?", url, re.DOTALL)
    if not m:
        raise ValueError("expected mysql+pymysql://USER:PASS@HOST[:PORT]/DB")
    if m["port"] is not None and not (m["port"].isdigit() and 0 < int(m["port"]) < 65536):
        raise ValueError(f"port {m['port']!r} is not a port number")
    options = {k: int(v) if v.isdigit() else v for k, v in parse_qsl(m["options"] or "")}
    for name, value in options.items():
        if name.endswith("_timeout") and not (isinstance(value, int) and 0 < value <= 3600):
            raise ValueError(f"option {name} must be a whole number of seconds, 1 to 3600")
    unknown = set(options) - set(URL_OPTIONS)
    if unknown:
        raise ValueError(f"PyMySQL takes no option {', '.join(sorted(unknown))}")
    if not any(name.startswith("ssl") for name in options):
        # TLS when the URL asks for it (ssl_ca=..., ssl_verify_identity=1), as PyMySQL 1.x and
        # SQLAlchemy had it.  PyMySQL 2's default, "preferred" TLS, verifies nothing and loads
        # the system's CA store at every connect: 25 ms of each cron run, for no safety.
        options["ssl_disabled"] = True
    return {"host": m["ipv6"] or m["host"] or "localhost", "port": int(m["port"] or 3306),
            "user": unquote(m["user"] or ""), "password": unquote(m["password"] or ""),
            "database": m["database"], "charset": "utf8mb4", "autocommit": False,
            # a hung server fails the call, as an unreachable one does (2013, lost connection)
            "connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout,
            # an UPDATE counts the rows it matched, as SQLite does, not only those it changed
            "client_flag": CLIENT.FOUND_ROWS, **options}


class Database:
    """One connection to the database at `url` (sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB),
    opened when first needed, and its transactions; driver errors come out as StorageError."""

    amounts: frozenset[str] | set[str] = frozenset()   # the columns read as Decimal (Cursor)

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        """timeout: seconds a MariaDB connect, read or write may take (storage.timeout).
        Raises StorageError for a malformed or unsupported URL."""
        self.where = masked(url)
        self._mysql = url.startswith("mysql+pymysql://")
        try:
            if self._mysql:
                import pymysql
                self._driver: Any = pymysql
                self._args = mysql_args(url, timeout)
            elif url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
                import sqlite3
                self._driver = sqlite3
                # isolation_level None: transactions are begun here, not by the driver; one connection,
                # used by one thread at a time, may be used by another (as SQLAlchemy's pool allowed)
                self._args = {"database": url[len("sqlite:///"):], "timeout": 30, "isolation_level": None,
                              "check_same_thread": False}
            else:
                raise ValueError("only sqlite:///PATH and mysql+pymysql://USER:PASS@HOST/DB are supported")
        except (ImportError, ValueError) as exc:
            raise StorageError(f"market DB URL {self.where} is malformed or unsupported: {exc}") from None
        self._conn: Any = None

    def close(self) -> None:
        self._drop()

    def _cursor(self, cursor: Any) -> Cursor:
        return Cursor(cursor, self._mysql, self.amounts)

    def _open(self) -> Any:
        """A new connection.  Raises DatabaseUnreachable when none can be had, StorageRefused
        when the server refuses us or TLS cannot be set up."""
        try:
            conn = self._driver.connect(**self._args)
        except self._driver.Error as exc:
            failure = self._failure(exc)
            if isinstance(failure, DatabaseUnreachable):
                raise DatabaseUnreachable(f"market DB {self.where} is unreachable: {cause(exc)}") from exc
            raise failure from exc
        except OSError as exc:  # the URL's ssl_ca / ssl_cert files, read before connecting
            raise StorageRefused(f"market DB {self.where}: TLS set-up failed: {cause(exc)}") from exc
        if not self._mysql:
            try:  # readers (plots, the agent) never wait for the ingestion job, nor it for them
                conn.execute("PRAGMA journal_mode=WAL")
            except self._driver.Error as exc:
                conn.close()
                raise DatabaseUnreachable(f"market DB {self.where} is unreachable: {cause(exc)}") from exc
        return conn

    def _drop(self) -> None:
        """Close the connection, if any, and forget it: the next call connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Cursor]:
        """One transaction; a database failure becomes a one-line StorageError naming the URL.

        SQLite writes BEGIN IMMEDIATE: they wait (30 s) for the write lock up front,
        rather than failing when a transaction that has read turns into a write.
        """
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        try:
            if not self._mysql:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield self._cursor(conn.cursor())
            conn.commit()
        except self._driver.Error as exc:
            self._rollback()
            raise self._failure(exc) from exc
        except Exception:
            self._rollback()
            raise
        except BaseException:  # interrupted, perhaps mid-statement: closing rolls back as well
            self._drop()
            raise

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused
            self._drop()

    def _failure(self, exc: Exception) -> StorageError:
        """The driver's error as ours: DatabaseUnreachable, with the connection dropped, when it is gone;
        StorageRefused when the server refused us or the SQLite file cannot be opened or created."""
        code = exc.args[0] if self._mysql and isinstance(exc, self._driver.OperationalError) and exc.args else None
        if code in REFUSED or getattr(exc, "sqlite_errorname", "") in SQLITE_REFUSED:
            self._drop()
            return StorageRefused(f"market DB {self.where}: {cause(exc)}")
        lost = self._mysql and (isinstance(exc, self._driver.InterfaceError) or code in LOST)
        if lost:
            self._drop()
            return DatabaseUnreachable(f"market DB {self.where}: {cause(exc)}")
        return StorageError(f"market DB {self.where}: {cause(exc)}")

    def table_exists(self, db: Cursor, table: str) -> bool:
        if self._mysql:
            exists = ("SELECT COUNT(*) FROM information_schema.tables "
                      "WHERE table_schema = DATABASE() AND table_name = %s")
        else:
            exists = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = %s"
        return bool(db.value(exists, (table,)))


def close_quietly(conn: Any) -> None:
    # closing a broken connection may fail too; it is gone either way
    with suppress(Exception):
        conn.close()
