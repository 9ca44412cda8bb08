"""What the owner asks first: what do I hold, am I up or down, did something break?

Everything comes from what the jobs left behind, with no call to the exchange, so it
answers as fast when the exchange is down: the state store's threads and free
balance (the agent's last run), the journal (fills, fees, orders in doubt), the
market DB's last tickers (the bid, the price the agent sells at), tmp/runs/<job>.json
(each job's last run) and the spool.  Cron-class start-up: no pandas, no matplotlib.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from includes.model import OPEN
from includes.money import ZERO, percent_change
from includes.rules import net_gain, net_proceeds
from includes.runtime import dry_run_requested, stop_requested
from includes.storage.journal import INTENT_STEP, fold, is_fill

if TYPE_CHECKING:
    from includes.config import Config
    from includes.storage.marketdb import MarketDB
    from includes.storage.state import StateStore
    from includes.storage.timeseries import TimeSeriesWriter

# Each job's cron period (crontab.example): a job that has not succeeded for LATE_PERIODS of them needs looking at.
# get_api_data's and trade_agent's are market_data.cycle_minutes (Status.cycle_seconds), 10 by default.
PERIODS = {"get_api_data": 600, "trade_agent": 600, "available_markets": 3600, "plot_graphs": 3600,
           "clean_and_backup_database": 31 * 86400}
LATE_PERIODS = 3
DOUBT_SECONDS = 3600      # an order in doubt for longer needs looking at
DAY = 86400
FILLS_MARK = "timeseries:fills"   # state-store key: where write_fills reads the journal from

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    last_run: float | None = None
    status: int | None = None          # the last run's exit status
    message: str = ""
    last_success: float | None = None


@dataclass
class Holding:
    thread: int
    state: str
    currency: str
    volume: Decimal
    value: Decimal                     # quote spent, fees included
    bought_at: Decimal | None
    bid: Decimal | None                # the last stored ticker's: what the agent would sell at
    unrealised: Decimal | None         # net of the sell fee, as the agent judges a sale
    unrealised_percent: Decimal | None


@dataclass
class Doubt:
    ref: str
    thread: int | None
    side: str
    market: str
    status: str
    since: float


@dataclass
class Status:
    now: float                         # the wall clock: job records and data ages
    exchange_now: float                # the exchange's clock as the last fetch saw it: orders are dated on it
    mode: str
    stop_file: bool
    dry_run_file: bool
    quote: str
    jobs: list[Job]
    holdings: list[Holding]
    realised_today: Decimal
    realised_7d: Decimal
    realised_total: Decimal
    fees: Decimal
    free: Decimal | None
    equity: Decimal | None
    change: Decimal                    # realised + unrealised since the first order
    change_percent: Decimal | None
    first_order: float | None
    in_doubt: list[Doubt]
    freshness: dict[str, float | None]  # market -> time of its last stored ticker
    spool_files: int
    spool_bytes: int
    attention: list[str] = field(default_factory=list)
    cycle_seconds: int = 600           # market_data.cycle_minutes: get_api_data's and trade_agent's period

    def as_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=2)


def jobs(tmp_dir: Path) -> list[Job]:
    """Each job's last run, from the records run_script leaves in tmp/runs/."""
    found = []
    for name in PERIODS:
        try:
            record = json.loads((tmp_dir / "runs" / f"{name}.json").read_text())
        except (OSError, ValueError):
            found.append(Job(name))
            continue
        found.append(Job(name, record.get("finished"), record.get("status"), record.get("message", ""),
                         record.get("last_success")))
    return found


def holdings(store: StateStore, bids: dict[str, Decimal | None], quote: str, fee_percent: Decimal) -> list[Holding]:
    """The threads that hold or move coins, valued at the bid net of the sell fee."""
    rows = []
    for t in store.threads():
        if not t.currency or not t.volume:
            continue
        bid = bids.get(f"{t.currency}/{quote}")
        net = net_proceeds(t.volume, bid, fee_percent) if bid is not None else None
        gain = net_gain(t.value, t.volume, bid, fee_percent) if bid is not None and t.value > 0 else None
        rows.append(Holding(t.n, t.state, t.currency, t.volume, t.value, t.lastbuyvalue, bid,
                            None if net is None else net - t.value,
                            None if gain is None else gain.quantize(Decimal("0.01"))))
    return rows


def free_balance(cfg: Config, store: StateStore, mode: str) -> Decimal | None:
    """Dry: the paper account's, exact.  Live: what the agent's last run found free before its
    orders (platform:totaleuro), so that status never calls the exchange.  None before any run."""
    if mode == "dry":
        try:
            ledger = json.loads((cfg.path(cfg.paths.tmp) / f"paper-{cfg.storage.namespace}.json").read_text())
            return Decimal(ledger["balances"].get(cfg.trading.quote, "0"))
        except (OSError, ValueError, KeyError):
            return None
    return store.get_decimal("platform:totaleuro")


def gather(cfg: Config, db: MarketDB, store: StateStore, mode: str, now: float | None = None) -> Status:
    """Every figure of the status, from the stores and tmp/."""
    now = time.time() if now is None else now
    t = cfg.trading
    exchange = _exchange(cfg)
    agent = cfg.storage.namespace
    threads = store.threads()
    markets = list(dict.fromkeys([f"{c}/{t.quote}" for c in t.currencies]
                                 + [f"{th.currency}/{t.quote}" for th in threads if th.currency]))
    last = {m: db.last_ticker(exchange, m) for m in markets}
    bids = {m: Decimal(row["bid"]) if row else None for m, row in last.items()}
    # Orders are dated on the exchange's clock (a Pi may have none): so are the P&L windows and doubts.
    exchange_now = max((float(row["ts"]) for row in last.values() if row), default=now)
    today = exchange_now - exchange_now % DAY
    # The journal's last week (and a day, for an order that took long to settle) folded from the
    # positions before it, and running totals for the rest: never the whole journal (issue 17).
    opens = exchange_now - 8 * DAY
    _, sales = fold(db.settled(mode, agent, since=opens), held=db.open_positions(mode, agent, before=opens))
    totals = db.fill_totals(mode, agent)
    realised = totals.realised
    held = holdings(store, bids, t.quote, t.fee_percent)
    free = free_balance(cfg, store, mode)
    unrealised = sum((h.unrealised for h in held if h.unrealised is not None), ZERO)
    change = realised + unrealised
    # what selling everything at the bid would leave, fees paid: free + each holding's value and unrealised P&L
    equity = None if free is None else free + sum((h.value + h.unrealised for h in held if h.unrealised is not None),
                                                  ZERO)
    # Spool.files(), without importing the spool's writers (requests, through coinmarketcap: 90 ms)
    spool = sorted((cfg.path(cfg.paths.tmp) / "spool").glob("*.jsonl"))
    status = Status(
        now=now, exchange_now=exchange_now, mode=mode, stop_file=stop_requested(cfg),
        dry_run_file=cfg.path(t.dry_run_file).exists(),
        quote=t.quote, jobs=jobs(cfg.path(cfg.paths.tmp)), holdings=held,
        realised_today=sum((s.pnl for s in sales if s.at >= today), ZERO),
        realised_7d=sum((s.pnl for s in sales if s.at >= exchange_now - 7 * DAY), ZERO), realised_total=realised,
        fees=totals.fees, free=free, equity=equity,
        change=change,
        # since the first order, on what was there then (no deposit or withdrawal since, as the agent assumes)
        change_percent=_percent(equity - change, equity) if equity is not None else None,
        first_order=db.first_intent(mode, agent),
        in_doubt=[Doubt(r["ref"], r["thread"], r["side"], r["market"], r["status"], float(r["intent_at"]))
                  for r in db.open_intents(mode, agent)],
        freshness={m: float(row["ts"]) if row else None for m, row in last.items()},
        spool_files=len(spool), spool_bytes=sum(_size(p) for p in spool),
        cycle_seconds=cfg.market_data.cycle_minutes * 60)
    status.attention = attention(status)
    return status


def attention(s: Status) -> list[str]:
    """What the owner must look at: a job not succeeding for LATE_PERIODS of its periods, an order
    in doubt for over an hour, rows waiting in the spool."""
    lines = []
    for job in s.jobs:
        if job.last_run is None:
            continue  # never run here (not in this crontab)
        since = job.last_success if job.last_success is not None else job.last_run
        period = s.cycle_seconds if job.name in ("get_api_data", "trade_agent") else PERIODS[job.name]
        if s.now - since > LATE_PERIODS * period:
            lines.append(f"{job.name} has not succeeded for {_age(s.now - since)}"
                         + (f": {job.message}" if job.message else ""))
    for d in s.in_doubt:
        if s.exchange_now - d.since > DOUBT_SECONDS:
            lines.append(f"{d.side} order {d.ref} ({d.market}) in doubt for {_age(s.exchange_now - d.since)}")
    if s.spool_files:
        lines.append(f"{s.spool_files} batches ({s.spool_bytes / 1e6:.1f} MB) wait in the spool: "
                     "the market DB was unreachable")
    return lines


def headline(s: Status) -> list[tuple[str, str]]:
    """The summary's first lines, (label, text): status.py and img/index.html show the same."""
    q = s.quote
    flags = [f for f, on in (("stop file", s.stop_file), ("dry-run file", s.dry_run_file)) if on]
    lines = [("mode", s.mode + (f" ({', '.join(flags)})" if flags else ""))]
    if s.equity is not None:
        pct = f" ({_signed(s.change_percent)} %)" if s.change_percent is not None else ""
        since = f" since {_date(s.first_order)}" if s.first_order else ""
        lines.append(("equity", (f"{_money(s.equity)} {q}, free {_money(s.free)} {q}; change{since}: "
                                 f"{_signed(s.change)} {q}{pct}")))
    else:
        lines.append(("equity", "unknown (the agent has not run yet)"))
    lines.append(("realised P&L", (f"today {_signed(s.realised_today)}, 7 days {_signed(s.realised_7d)}, "
                                   f"total {_signed(s.realised_total)} {q}; fees paid {_money(s.fees)} {q}")))
    lines.append(("orders in doubt", str(len(s.in_doubt))))
    return lines


def render(s: Status) -> str:
    """The status as a few aligned lines for a terminal or a cron mail."""
    q = s.quote
    out = [f"{label}: {text}" for label, text in headline(s) if label != "orders in doubt"]
    out.append(f"threads holding: {len(s.holdings)}")
    for h in s.holdings:
        now = (f"bid {h.bid.normalize():f}, {_signed(h.unrealised)} {q} ({_signed(h.unrealised_percent)} %)"
               if h.bid is not None else "no price stored")
        bought = f"{h.bought_at.normalize():f}" if h.bought_at is not None else "?"
        out.append(f"  #{h.thread} {h.state:7} {h.volume.normalize():f} {h.currency} bought at {bought}, {now}")
    out.append(f"orders in doubt: {len(s.in_doubt)}")
    for d in s.in_doubt:
        out.append(f"  {d.side} {d.ref} {d.market} {d.status} for {_age(s.exchange_now - d.since)}")
    out.append("jobs:")
    for j in s.jobs:
        if j.last_run is None:
            out.append(f"  {j.name:26} never run")
        else:
            result = "ok" if j.status == 0 else f"exit {j.status}" + (f": {j.message}" if j.message else "")
            out.append(f"  {j.name:26} {_age(s.now - j.last_run)} ago, {result}")
    out.append("data: " + (", ".join(f"{m} {_age(s.now - ts) + ' old' if ts else 'none'}"
                                     for m, ts in s.freshness.items()) or "no market"))
    out.append(f"spool: {s.spool_files} batches ({s.spool_bytes / 1e6:.1f} MB)")
    return "\n".join(out)


def write_timeseries(cfg: Config, mode: str) -> None:
    """The bot's figures into the time series (storage.timeseries), after an agent run: equity, free
    balance, P&L, each currency's position and the new fills.  Optional like the market series: a
    failure is logged."""
    from includes.errors import StorageError
    from includes.storage import open_timeseries

    writer = open_timeseries(cfg)
    if writer is None:
        return
    try:
        with _stores(cfg, mode) as (db, store):
            s = gather(cfg, db, store, mode)
            figures = {"equity": s.equity, "free": s.free, "realised": s.realised_total, "change": s.change,
                       "unrealised": s.change - s.realised_total, "fees": s.fees, "in_doubt": len(s.in_doubt)}
            positions: dict[str, dict[str, Decimal]] = {}
            for h in s.holdings:
                p = positions.setdefault(h.currency, {"volume": ZERO, "value": ZERO, "market_value": ZERO})
                p["volume"] += h.volume
                p["value"] += h.value
                p["market_value"] += h.value + (h.unrealised or ZERO)
            writer.write_bot(cfg.storage.namespace, mode, s.quote, int(s.exchange_now), figures, positions)
            write_fills(writer, db, store, cfg.storage.namespace, mode, _exchange(cfg))
    except StorageError as exc:
        log.warning("time series: %s", exc)
    finally:
        writer.close()


def write_fills(writer: TimeSeriesWriter, db: MarketDB, store: StateStore, agent: str, mode: str,
                exchange: str) -> int:
    """The journal's fills not written yet, each as a point at its fill time; how many.

    FILLS_MARK keeps where to read from: the intent of the oldest order still open (it may
    fill yet), else just past the last intent read, with the fills written since it, so that a
    run reads only the journal's tail and writes each fill once.  It moves only after the
    write: a run that fails writes the same points again, which are the same points.
    """
    saved = json.loads(store.get_value(FILLS_MARK) or "{}")
    since, written = saved.get("since"), set(saved.get("written", ()))
    rows = db.journal(mode, since=since, agent=agent)
    fills = [r for r in rows if is_fill(r) and r["ref"] not in written]
    writer.write_fills(agent, mode, exchange, fills)
    if rows:
        still_open = [r for r in rows if r["status"] in OPEN]
        if still_open:
            since = float(still_open[0]["intent_at"])
            written = {r["ref"] for r in rows if is_fill(r) and float(r["intent_at"]) >= since}
        else:
            since, written = float(rows[-1]["intent_at"]) + INTENT_STEP / 2, set()   # intents are that far apart
        store.set_value(FILLS_MARK, json.dumps({"since": since, "written": sorted(written)}))
    return len(fills)


@contextmanager
def _stores(cfg: Config, mode: str) -> Iterator[tuple[MarketDB, StateStore]]:
    """The market DB and the mode's state store the config names, closed after use."""
    from includes.storage import open_market_db, open_state

    db = open_market_db(cfg)
    try:
        store = open_state(cfg, mode)
    except BaseException:
        db.close()
        raise
    try:
        yield db, store
    finally:
        store.close()
        db.close()


def gather_from_config(cfg: Config, mode: str) -> Status:
    """gather() over the stores the config names, opened and closed here."""
    with _stores(cfg, mode) as (db, store):
        return gather(cfg, db, store, mode)


def _exchange(cfg: Config) -> str:
    """The exchange name the market data is stored under."""
    return cfg.exchange.ccxt_id if cfg.exchange.name == "ccxt" and cfg.exchange.ccxt_id else cfg.exchange.name


def status_job(cfg: Config, as_json: bool = False, send: bool = False) -> int:
    """status.py: the status on stdout, and each reason for attention on stderr with exit status 1:
    run from cron with stdout to /dev/null, it mails only what needs looking at.  `send`: the
    text also goes to the notify.urls that take the daily 'summary'."""
    from includes.runtime import notify, tell_owner

    mode = "dry" if dry_run_requested(cfg) else "live"
    status = gather_from_config(cfg, mode)
    text = render(status)
    print(status.as_json() if as_json else text, flush=True)
    if send:
        notify("summary", f"{status.mode}: equity {_money(status.equity)} {status.quote}, "
                          f"{len(status.attention)} to look at", text)
    for line in status.attention:
        tell_owner("status", line)
    return 1 if status.attention else 0


def _percent(old: Decimal, new: Decimal | None) -> Decimal | None:
    """percent_change to the hundredth, None when there is nothing to compare with."""
    return percent_change(old, new).quantize(Decimal("0.01")) if new is not None and old > 0 else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0   # replayed meanwhile


def _money(value: Decimal | None) -> str:
    return "?" if value is None else f"{value:,.2f}"


def _signed(value: Decimal | None) -> str:
    return "?" if value is None else f"{value:+,.2f}"


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", DAY), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
