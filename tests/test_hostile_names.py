"""Market names are data from the exchange, not schema: hostile ones listed by the
simulator are skipped with one warning line, and every other market is stored, charted
and traded as before, on SQLite and on MariaDB; nothing is written outside tmp/ and img/."""
from __future__ import annotations

import subprocess
import sys

import pytest

from includes.marketdata import AVAILABLE_FILE, available_markets, get_api_data
from includes.storage.marketdb import MarketDB
from tests.conftest import ROOT

HOSTILE = ["QU'OTE", "BACK`TICK", "..", "../../ETC", "BACK\\SLASH", "NUL\0X", "NEW\nLINE", "<b>HTML</b>",
           "L" * 500, "\u202eRTL", "ÜNICODE", "WAYTOOLONGBASENAME17", "low", "SPACE X", "SEMI;COLON"]
MARKETS = ["BTC/EUR", "ETH/EUR", "LTC/EUR", "XRP/EUR", "ADA/EUR"]


@pytest.mark.slow
def test_hostile_market_names_never_stop_a_cycle_nor_leave_their_place(tmp_path, db_url, job_config, kraken_venue,
                                                                         caplog):
    sim = kraken_venue.sim
    for i, name in enumerate(HOSTILE):
        sim.add_pair(f"HOSTILE{i}", name, "ZEUR", "1.5", wsname=f"{name}/EUR")
    sim.set_pair_status("XETHZEUR", "online")
    cfg = job_config(market_db=db_url, market_data={"markets": "all"})
    before = {p for p in tmp_path.rglob("*")}

    assert available_markets(cfg) == 0
    assert get_api_data(cfg) == 0
    skipped = [r.getMessage() for r in caplog.records if "skipped, named other than BASE/QUOTE" in r.getMessage()]
    assert skipped and all("markets skipped" in line and "\n" not in line for line in skipped)

    db = MarketDB(db_url)
    stored = {r["market"] for r in db._all("SELECT market FROM markets")}
    assert set(MARKETS) <= stored and all(name.isascii() and "\n" not in name for name in stored)
    assert all(len(db.candles("kraken", m, 5)) == 720 for m in MARKETS)
    db.close()
    lines = (tmp_path / "tmp" / AVAILABLE_FILE).read_text().splitlines()
    assert len(lines) == 1 + sum(1 for p in sim._pairs.values() if p.status == "online") - len(HOSTILE)
    assert all(line.isascii() and line.isprintable() for line in lines)

    job_config(market_db=db_url, plots={"markets": [*MARKETS, "ÜNICODE/EUR", "\u202eRTL/EUR", "../../EUR"]})
    for script in ("trade_agent", "plot_graphs"):
        done = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--config", str(tmp_path / "config.yaml")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and not done.stderr, (script, done.stderr)
    made = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(tmp_path / d) for p in made for d in ("tmp", "img", "log", "config.yaml")
               if p.is_relative_to(tmp_path / d)) and all(
        any(p.is_relative_to(tmp_path / d) for d in ("tmp", "img", "log")) or p.name in ("market.db", "state.db",
                                                                                          "market.db-wal",
                                                                                          "market.db-shm",
                                                                                          "state.db-wal",
                                                                                          "state.db-shm")
        for p in made), sorted(map(str, made))
    assert {p.name for p in (tmp_path / "img").iterdir()} >= {f"{m.replace('/', '-')}.png" for m in MARKETS}
