"""Market DB fixtures: a MarketDB on SQLite then on MariaDB, and one that cannot connect."""
from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from includes.storage.marketdb import MarketDB


@pytest.fixture
def market_db(db_url: str) -> Iterator[MarketDB]:
    db = MarketDB(db_url)
    yield db
    db.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound by us, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_url(closed_port: int) -> str:
    """A MariaDB URL with a password, on a port where no server answers."""
    return f"mysql+pymysql://crontrader:s3cret-pw@127.0.0.1:{closed_port}/market"
