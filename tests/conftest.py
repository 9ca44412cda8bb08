"""Fixtures that build whole, real objects: databases, namespaces, simulators.

MariaDB (127.0.0.1:3306, root) and Redis (127.0.0.1:6379) must be running; `make
test` starts them.  Each test gets its own database and its own key namespace.
"""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT / "tests" / "data"   # real candles, with their README and checksums
MYSQL_SERVER = os.environ.get("CRONTRADER_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("CRONTRADER_TEST_REDIS", "redis://127.0.0.1:6379/0")

sys.path.insert(0, str(ROOT))

# Every module in tests/plugins/ is a fixture plugin of one area of the code.
pytest_plugins = sorted(f"tests.plugins.{p.stem}" for p in (ROOT / "tests" / "plugins").glob("[a-z]*.py"))

# The fixtures that reach a server or a browser (MariaDB, Redis, VictoriaMetrics, sshd,
# Chromium), and the parameter values of those that pick one at run time (db_url's
# "mariadb", state_store_target's "redis", stores' "mariadb+redis"): a test using any of
# them is marked `services` at collection, so `make test-fast` leaves it out unasked.
SERVICE_FIXTURES = {"mariadb_url", "redis_namespace", "victoria_metrics", "sshd", "chromium",
                    "private_mariadb", "private_redis"}
SERVICE_PARAM_VALUES = {"mariadb", "redis"}


def needs_services(item: pytest.Item) -> bool:
    """Whether the test's fixtures (their whole closure) or its parameters reach a service."""
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {}).values()
    return any(isinstance(v, str) and SERVICE_PARAM_VALUES & set(v.split("+")) for v in params)


# A test writes under its tmp_path: a file that appears or changes in the checkout's tmp/,
# log/ or img/ meanwhile fails the session (checked once, by the xdist controller).
CHECKOUT_OUTPUT = ("tmp", "log", "img")
CHECKOUT_FILES = pytest.StashKey[dict[str, float]]()


def checkout_files() -> dict[str, float]:
    """Path and mtime of everything under the checkout's output directories."""
    found = {}
    for path in (p for d in CHECKOUT_OUTPUT for p in (ROOT / d).rglob("*")):
        with contextlib.suppress(FileNotFoundError):   # removed meanwhile by whatever made it
            found[str(path.relative_to(ROOT))] = path.lstat().st_mtime
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        session.config.stash[CHECKOUT_FILES] = checkout_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(CHECKOUT_FILES, None)
    if before is None:
        return
    written = sorted(path for path, mtime in checkout_files().items() if before.get(path) != mtime)
    if written:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write("\n")
            reporter.write_line(f"the tests wrote into the checkout (use tmp_path): {', '.join(written[:10])}",
                                red=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if needs_services(item):
            item.add_marker(pytest.mark.services)


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    """Each test starts with no registered secret: one test's keys must not redact another's lines."""
    from includes.redaction import forget_secrets

    forget_secrets()
    yield
    forget_secrets()


@pytest.fixture
def mariadb_url() -> str:
    """URL of a fresh, empty MariaDB database, dropped after the test."""
    import pymysql

    name = f"ct_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"{MYSQL_SERVER}/{name}"
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'market.db'}"


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on MariaDB."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def redis_namespace() -> str:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    namespace = f"cttest-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def shared_data() -> Path:
    """tests/data: real historical candles (see its README)."""
    return SHARED_DATA
