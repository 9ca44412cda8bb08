"""The three stores, opened from the config; each imports its client only when used."""
from __future__ import annotations

from typing import TYPE_CHECKING

from includes.redaction import register_secret

# SQLite's errors about the file itself (it cannot be opened, created or written): no retry cures them.
SQLITE_REFUSED = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")

if TYPE_CHECKING:
    from includes.config import Config
    from includes.storage.marketdb import MarketDB
    from includes.storage.spool import Spool
    from includes.storage.state import StateStore
    from includes.storage.timeseries import TimeSeriesWriter


def open_market_db(cfg: Config) -> MarketDB:
    from includes.storage.marketdb import MarketDB

    url = cfg.resolve_url(cfg.storage.market_db)
    _register_password(url)
    return MarketDB(url, cfg.storage.timeout)


def open_spool(cfg: Config) -> Spool:
    """tmp/spool, capped as the config says."""
    from includes.storage.spool import Spool

    return Spool(cfg.path(cfg.paths.tmp) / "spool", cfg.storage.spool_max_mb, cfg.storage.spool_max_days)


def open_state(cfg: Config, mode: str) -> StateStore:
    from includes.storage.state import open_state_store

    url = cfg.resolve_url(cfg.storage.state)
    _register_password(url)
    return open_state_store(url, cfg.storage.namespace, mode, cfg.storage.timeout)


def open_timeseries(cfg: Config) -> TimeSeriesWriter | None:
    """None when no time-series server is configured."""
    ts = cfg.storage.timeseries
    if not ts.url:
        return None
    from includes.files import read_token_file
    from includes.storage.timeseries import TimeSeriesWriter

    token = read_token_file(cfg.path(ts.token_file)) if ts.token_file else ""
    register_secret(token)
    return TimeSeriesWriter(ts.url, ts.org, ts.bucket, token, timeout=ts.timeout)


def _register_password(url: str) -> None:
    """The password of user:password@host never reaches a log line."""
    userinfo = url.partition("://")[2].partition("@")
    if userinfo[1] and ":" in userinfo[0]:
        register_secret(userinfo[0].partition(":")[2])
