"""Each query a cron job makes is bounded by what the job needs, not by the history (issue 17):
on SQLite and on MariaDB, its plan reads `candles` and `orders` through an index, never a full
scan, so a later change cannot bring a scan back unnoticed.  bench/growth.py measures the times."""
from __future__ import annotations

import random
import re
from decimal import Decimal as D
from typing import Any

from includes.model import FINAL, Candle
from includes.storage.journal import fold, is_fill, positions
from includes.storage.marketdb import Cursor, MarketDB

T0 = 1_700_000_100 // 300 * 300
MARKETS = [f"C{i:02d}/EUR" for i in range(8)]


def fill(db: MarketDB, rng: random.Random) -> None:
    """Three days of 5-minute candles for a few markets, tickers, and a journal of many failed
    buys around a few real trades, partial sells and canceled orders on four threads."""
    for m in MARKETS:
        price = D(rng.randint(10, 1000))
        db.upsert_candles("kraken", m, 5, [Candle(T0 + 300 * i, price, price, price, price, D(1), True)
                                           for i in range(864)])
    db.upsert_markets("kraken", [], seen_at=T0)  # no rows, but a markets table to join
    at = float(T0)
    for i in range(1500):
        n, at = i % 4 + 1, at + 60
        ref = f"r{i}"
        roll = rng.random()
        side = "buy" if roll < 0.8 or i % 7 else "sell"
        db.journal_intent(ref, mode="live", exchange="kraken", market=MARKETS[n], side=side, thread=n,
                          amount_quote=D(5), at=at)
        if roll < 0.7:
            db.journal_result(ref, "failed", error="EOrder:Insufficient funds", at=at + 1)
        elif roll < 0.75:
            db.journal_result(ref, "canceled", filled=D(0), at=at + 1)
        elif roll < 0.99:
            db.journal_result(ref, "closed", filled=D(rng.choice(["0.5", "1", "0.25"])), price=D(10), cost=D(5),
                              fee=D("0.01"), at=at + 1)
        # else: left open (an intent in doubt)


def test_open_positions_read_from_the_indexes_agree_with_the_whole_journal_folded(db_url):
    db = MarketDB(db_url)
    try:
        fill(db, random.Random(17))
        everything = [r for r in db.journal("live") if r["status"] in FINAL and r["thread"] is not None]
        assert db.open_positions("live") == positions(everything)
        assert db.open_positions("live")                        # something is held: the test means something
        assert [r["ref"] for r in db.settled("live")] == [
            r["ref"] for r in db.journal("live") if r["status"] in ("closed", "canceled", "expired")]
        assert [r["ref"] for r in db.open_intents("live")] == [
            r["ref"] for r in db.journal("live") if r["status"] == "intent"]
        # what plot_graphs and status.py read instead of the whole journal (issue 17)
        middle = T0 + 60 * 750.5
        earlier = [r for r in everything if r["intent_at"] < middle]
        assert db.open_positions("live", before=middle) == positions(earlier)
        assert db.open_positions("live", before=middle) != db.open_positions("live")
        held, sales = fold(everything)
        totals = db.fill_totals("live")
        assert totals.realised == sum(s.pnl for s in sales) and totals.held == held
        assert totals.fees == sum(r["fee"] for r in everything if is_fill(r))
        assert db.fill_totals("live", before=middle).realised == sum(s.pnl for s in fold(earlier)[1])
        later = [r for r in everything if r["intent_at"] >= middle]
        assert fold(later, held=db.open_positions("live", before=middle)) == (held, [s for s in sales if s.ref in
                                                                                  {r["ref"] for r in later}])
        fills = [r["ref"] for r in everything if is_fill(r)]
        assert [r["ref"] for r in db.latest_fills("live", limit=5)] == fills[::-1][:5]
        assert db.first_intent("live") == T0 + 60
        assert db.settled("live", since=middle) == [r for r in db.settled("live") if r["intent_at"] >= middle]
    finally:
        db.close()


def plans(db: MarketDB, statements: list[tuple[str, Any]]) -> list[str]:
    """Every full scan of candles or orders in the plans of `statements`, as 'table: detail'."""
    scans = []
    with db._begin() as c:
        for sql, params in statements:
            if not re.match(r"\s*(WITH|SELECT|UPDATE|DELETE)", sql):
                continue
            if db._mysql:
                c.cursor.execute("EXPLAIN " + sql, params)
                names = [d[0] for d in c.cursor.description]
                for row in c.cursor.fetchall():
                    r = dict(zip(names, row, strict=True))
                    if r["table"] in ("candles", "orders") and r["type"] in ("ALL", "index"):
                        scans.append(f"{r['table']}: {r['type']} {r['Extra']} in {sql}")
            else:
                c.cursor.execute("EXPLAIN QUERY PLAN " + sql.replace("%s", "?"), c.params(params))
                scans += [f"{detail} in {sql}" for *_, detail in c.cursor.fetchall()
                          if re.match(r"SCAN (candles|orders)\b", detail)]
    return scans


def used(db: MarketDB, sql: str, params: Any) -> set[str]:
    """The indexes of `orders` that the plan of `sql` reads."""
    with db._begin() as c:
        if db._mysql:
            c.cursor.execute("EXPLAIN " + sql, params)
            return {r[5] for r in c.cursor.fetchall() if r[2] == "orders"}
        c.cursor.execute("EXPLAIN QUERY PLAN " + sql.replace("%s", "?"), c.params(params))
        return set(re.findall(r"orders USING (?:COVERING )?INDEX (\w+)", " ".join(r[-1] for r in c.cursor.fetchall())))


def test_every_hot_query_reads_candles_and_orders_through_an_index(db_url, monkeypatch):
    db = MarketDB(db_url)
    try:
        fill(db, random.Random(17))
        if db._mysql:
            with db._begin() as c:
                c.execute("ANALYZE TABLE `candles`, `orders`, `tickers`")
        seen: list[tuple[str, Any]] = []
        run = Cursor.execute

        def traced(self: Cursor, sql: str, params: Any = ()) -> int:
            seen.append((sql, params))
            return run(self, sql, params)

        monkeypatch.setattr(Cursor, "execute", traced)   # records the statements; the database runs them
        db.last_candle_ts_by_market("kraken", 5, MARKETS)                       # get_api_data
        db.closes_at("kraken", MARKETS[1], 5, [T0 + 86400 * 3 - h * 3600 for h in (0, 2, 6, 12, 24, 48)])
        db.open_intents("live")                                                 # trade_agent
        db.open_positions("live")
        db.settled("live")                                                      # plot_graphs
        db.journal("live", since=T0 + 86400 * 3)                                # the fills to the time series
        db.settled("live", since=T0 + 86400 * 3 - 48 * 3600)                    # plot_graphs, status.py
        db.open_positions("live", before=T0 + 86400 * 3 - 48 * 3600)
        db.fill_totals("live", before=T0 + 86400 * 3 - 48 * 3600)
        db.latest_fills("live")
        db.first_intent("live")
        db.journal_intent("new", mode="live", exchange="kraken", market=MARKETS[1], side="buy", thread=1)
        db.journal_result("new", "failed", error="EOrder:Insufficient funds")
        db.journal_looked_up("new")
        for table in ("candles", "tickers"):                                    # the backup's dry run
            db.archived_days(table, T0 + 86400)
        db.delete_keys("candles", [("kraken", MARKETS[0], 5, T0 + 300 * i) for i in range(10)])  # its trim
        monkeypatch.undo()
        assert len(seen) > 10
        assert plans(db, seen) == []
        by_status = {sql: used(db, sql, params) for sql, params in seen if "`status` IN (" in sql
                     and "`thread` =" not in sql}
        # open intents, settled, the fills' totals: by their status, not past every row; the latest
        # fills down orders_time from the end, until it has found them; a window's fills either way
        either = [{"orders_status"}, {"orders_time"}]
        assert all(found in ([{"orders_time"}] if "LIMIT" in sql else
                             either if "`intent_at` >= %s" in sql else [{"orders_status"}])
                   for sql, found in by_status.items()), by_status
    finally:
        db.close()
