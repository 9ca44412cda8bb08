"""A hung server (SIGSTOP: its port still accepts, nothing ever answers) is an unreachable
one after storage.timeout: no job waits on it for ever, and nothing is lost."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from includes.marketdata import get_api_data
from includes.model import Candle
from includes.storage import open_market_db, open_state
from includes.storage.marketdb import DatabaseUnreachable, MarketDB
from includes.storage.state import StorageError
from tests.conftest import ROOT

CANDLE = Candle(1_700_000_000, Decimal("1.5"), Decimal(2), Decimal(1), Decimal("1.5"), Decimal(3))


def test_a_hung_mariadb_fails_the_call_after_the_timeout_and_the_next_call_reconnects(private_mariadb, job_config):
    cfg = job_config(market_db=private_mariadb.url, storage={"timeout": 1})
    db = open_market_db(cfg)
    db.upsert_candles("kraken", "BTC/EUR", 1, [CANDLE])
    with private_mariadb.hung():
        with pytest.raises(DatabaseUnreachable, match="timed out") as caught:
            db.last_candle_ts("kraken", "BTC/EUR", 1)           # on the open connection: a read
        assert "\n" not in str(caught.value)
        with pytest.raises(DatabaseUnreachable, match="is unreachable"):
            MarketDB(private_mariadb.url, timeout=1).last_candle_ts("kraken", "BTC/EUR", 1)   # a connect
    assert db.last_candle_ts("kraken", "BTC/EUR", 1) == CANDLE.ts
    db.close()


def test_the_default_timeout_bounds_reads_and_writes_too():
    """Without one, PyMySQL waits for ever on a server that accepted the connection."""
    from includes.storage.sql import mysql_args

    args = mysql_args("mysql+pymysql://root@127.0.0.1/crontrader", 20)
    assert (args["connect_timeout"], args["read_timeout"], args["write_timeout"]) == (20, 20, 20)
    assert mysql_args("mysql+pymysql://root@127.0.0.1/crontrader?read_timeout=5", 20)["read_timeout"] == 5


def test_get_api_data_spools_while_mariadb_is_hung_and_replays_after(private_mariadb, job_config, tmp_path):
    cfg = job_config(market_db=private_mariadb.url, storage={"timeout": 1})
    with private_mariadb.hung():
        assert get_api_data(cfg) == 0
    assert list((tmp_path / "tmp" / "spool").iterdir())
    assert get_api_data(cfg) == 0
    assert not list((tmp_path / "tmp" / "spool").iterdir())
    db = MarketDB(private_mariadb.url)
    assert db.candles("kraken", "BTC/EUR", 5)
    db.close()


def test_a_hung_redis_fails_the_call_after_the_timeout(private_redis, job_config):
    cfg = job_config(state=private_redis.url, storage={"timeout": 1, "namespace": "hung-test"})
    store = open_state(cfg, "live")
    store.ensure_threads(2)
    with private_redis.hung():
        with pytest.raises(StorageError, match=r"Redis at 127\.0\.0\.1:\d+/0: Timeout") as caught:
            store.threads()
        assert "\n" not in str(caught.value)
    assert [t.n for t in store.threads()] == [1, 2]
    store.close()


def test_the_agent_ends_with_one_line_while_redis_is_hung(private_redis, job_config, tmp_path):
    job_config(state=private_redis.url, storage={"timeout": 1, "namespace": "hung-agent"})
    with private_redis.hung():
        done = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("trade_agent: ") and "Redis at 127.0.0.1:" in line and "Timeout" in line


def test_the_agent_reports_a_lock_without_ttl_once_and_bounds_it(job_config, tmp_path, redis_namespace):
    """Left by a stalled run of an old version, or set by hand: it would silence the agent for ever."""
    import redis

    from tests.conftest import REDIS_URL

    job_config(state=REDIS_URL, storage={"namespace": redis_namespace})
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{redis_namespace}:dry:lock:agent"
    client.set(key, "elsewhere:1:stalled")
    runs = [subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    [line] = runs[0].stderr.strip().splitlines()
    assert line == (f"trade_agent: Redis at 127.0.0.1:6379/0: lock {key} held by 'elsewhere:1:stalled' had no ttl: "
                    f"it now expires in 900 s, and a later run takes it over")
    assert runs[1].stderr == ""                                   # said once
    assert 0 < client.pttl(key) <= 900_000
    client.close()


def test_the_agent_ends_with_one_line_while_mariadb_is_hung(private_mariadb, job_config, tmp_path):
    """It holds its lock meanwhile: with no timeout it held it for ever, and later runs exited 0 quietly."""
    job_config(market_db=private_mariadb.url, storage={"timeout": 1})
    with private_mariadb.hung():
        done = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(tmp_path / "config.yaml")],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"trade_agent: market DB {private_mariadb.url}") and "timed out" in line
