"""Properties of the agent over random configs and random price paths (hypothesis),
through the real stack: the Kraken simulator, the paper platform, SQLite stores."""
from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from includes.agent import BUSY, run_agent
from includes.money import percent_change, round_down
from includes.storage import open_market_db, open_state
from tests.plugins.agent import CURRENCIES, PAIRS

configs = st.fixed_dictionaries({
    "max_threads": st.integers(1, 6),
    "max_per_trade": st.sampled_from(["5", "7.5", "12"]),
    "sell_percent": st.sampled_from(["0.5", "1", "2.5", "4"]),
    "total_invest": st.one_of(st.none(), st.sampled_from(["10", "24", "60"])),
    "threads_per_currency": st.one_of(st.none(), st.integers(1, 3)),
    "stop_loss_percent": st.one_of(st.none(), st.sampled_from(["2", "8"])),
    "max_hold_hours": st.one_of(st.none(), st.sampled_from([1, 6])),
    "dry_run_balance": st.sampled_from(["15", "40", "200"]),
})
steps = st.lists(st.tuples(st.fixed_dictionaries({c: st.sampled_from(["0.9", "0.97", "1", "1.03", "1.12"])
                                                  for c in CURRENCIES}),
                           st.sampled_from([600, 3600, 4 * 3600])), min_size=2, max_size=5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trading=configs, path=steps)
def test_agent_invariants(kraken_venue, job_config, tmp_path_factory, trading, path):
    sim = kraken_venue.sim
    home = tmp_path_factory.mktemp("example")
    cfg = job_config(market_db=f"sqlite:///{home / 'market.db'}", state=f"sqlite:///{home / 'state.db'}",
                     paths={"tmp": str(home / "tmp"), "log": str(home / "log")},
                     trading={"currencies": CURRENCIES, **{k: v for k, v in trading.items() if v is not None}})
    t = cfg.trading
    markets = kraken_venue.platform().markets()
    for factors, seconds in path:
        for currency, factor in factors.items():
            pair = sim.pair(PAIRS[currency])
            sim.set_price(PAIRS[currency], (sim.price(PAIRS[currency]) * Decimal(factor))
                          .quantize(Decimal(1).scaleb(-pair.pair_decimals)))
        sim.advance(seconds)
        run_agent(cfg)

        store = open_state(cfg, "dry")
        threads = store.threads()
        store.close()
        busy = [th for th in threads if th.state in BUSY]
        assert len(busy) <= t.max_threads
        for currency in CURRENCIES:
            assert sum(th.currency == currency for th in busy) <= t.currency_cap
        assert sum(th.value for th in busy) <= t.budget
        ledger_file = home / "tmp" / "paper-crontrader.json"   # written at the first fill
        ledger = json.loads(ledger_file.read_text()) if ledger_file.exists() else {"balances": {}, "orders": {}}
        assert Decimal(ledger["balances"].get("EUR", t.dry_run_balance)) >= 0
        for order in ledger["orders"].values():
            market, volume, price = markets[order["market"]], Decimal(order["volume"]), Decimal(order["price"])
            assert volume == round_down(volume, market.volume_decimals)
            assert volume >= market.min_volume and volume * price >= market.min_cost

    db = open_market_db(cfg)
    journal = db.journal("dry", agent=cfg.storage.namespace)
    db.close()
    bought = {}
    for row in journal:
        if not row["filled"]:
            continue
        if row["side"] == "buy":
            bought[row["thread"]] = row
            continue
        buy = bought.pop(row["thread"])
        gain = percent_change(buy["cost"] + buy["fee"], row["cost"] - row["fee"])
        allowed = gain >= t.sell_percent - Decimal("0.0001")
        allowed |= t.stop_loss_percent is not None and gain <= -t.stop_loss_percent
        allowed |= t.max_hold_hours is not None and row["result_at"] - buy["result_at"] >= t.max_hold_hours * 3600
        assert allowed, (gain, buy, row)
