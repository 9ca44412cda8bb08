"""Backtest inputs: candle CSV files and the market DB as Series, and each market's order rules
(ordermin, costmin, decimals) from a saved Kraken AssetPairs reply or the market DB."""
from __future__ import annotations

import json
import logging
import math
import re
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from operator import lt
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from includes.errors import ConfigError
from includes.platforms.replay import FALLBACK, Series, fallback

if TYPE_CHECKING:

    from includes.config import Config
    from includes.model import Market

log = logging.getLogger(__name__)

HEADER = "timestamp,open,high,low,close,volume"
CHUNK = 1 << 20                     # characters of CSV parsed at a time
NAME_RE = re.compile(r"^([A-Za-z0-9]+)_([A-Z0-9]{1,16})_([A-Z0-9]{1,16})_(\d+)([mhdwM])(?:_.*)?$")
UNITS = {"m": 1, "h": 60, "d": 1440, "w": 10080}
PAIR_RE = re.compile(r"^[A-Z0-9]{1,16}/[A-Z0-9]{1,16}$")
TIMEFRAME_RE = re.compile(r"^(\d+)([mhdwM])$")
MS_FROM = 100_000_000_000          # unix seconds of the year 5138: a time past it is in milliseconds

class InputError(ConfigError):
    """A candle file, the market DB's candles or an argument cannot be used (exit status 2)."""

# --- sources ---------------------------------------------------------------------------------

def read_csv(path: Path, pair: str | None = None, timeframe: str | None = None) -> Series:
    """A candle file, as a series of BASE/QUOTE in the file's own quote, at its own timeframe.

    Both come from a name <exchange>_<BASE>_<QUOTE>_<timeframe>[_<note>].csv,
    or from `pair` ("BTC/EUR") and `timeframe` ("5m") for a file named
    otherwise.  Times in milliseconds are converted to seconds.  Parsing goes
    a megabyte at a time, a column at a time, in C: str.split and float()
    over a whole column; a line is looked at alone only to name it in an error.
    """
    match = NAME_RE.match(path.stem)
    if (pair is None or timeframe is None) and not match:
        raise InputError(f"{path}: the name is not <exchange>_<BASE>_<QUOTE>_<timeframe>.csv "
                         f"(e.g. kraken_BTC_EUR_5m.csv): give --pair BASE/QUOTE and --timeframe (e.g. 5m)")
    if pair is not None:
        if not PAIR_RE.match(pair):
            raise InputError(f"--pair {pair}: expected BASE/QUOTE in capitals and digits, e.g. BTC/EUR")
        base, own_quote = pair.split("/")
    else:
        assert match
        base, own_quote = match.group(2), match.group(3)
    if timeframe is not None:
        frame = TIMEFRAME_RE.match(timeframe)
        if not frame:
            raise InputError(f"--timeframe {timeframe}: expected a number and m, h, d or w, e.g. 5m or 1d")
        length, unit = frame.groups()
    else:
        assert match
        length, unit = match.group(4), match.group(5)
    if unit == "M":
        raise InputError(f"{path}: calendar-month candles ({length}M) have no fixed length and cannot be replayed")
    interval = int(length) * UNITS[unit]
    if interval < 1:
        raise InputError(f"{path}: a timeframe of {length}{unit} is not a length of time")
    columns: list[array] = [array("q"), *(array("d") for _ in range(5))]
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = f.readline()
            if header.strip().replace(" ", "") != HEADER:
                raise InputError(f"{path}:1: the header is {header.strip()[:60]!r}, not {HEADER!r}")
            for line, chunk in _chunks(f, first_line=2):
                _parse_chunk(chunk, columns, path, line)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: is not a text file ({exc.reason})") from None
    if not columns[0]:
        raise InputError(f"{path}: no candles after the header")
    _check_columns(path, columns)
    columns[0] = _seconds(path, columns[0])
    ts, o, h, lo, c, v = columns
    return Series(f"{base}/{own_quote}", interval, ts, o, h, lo, c, v, label=path.stem)


def _seconds(path: Path, ts: array) -> array:
    """Unix seconds: times past MS_FROM are milliseconds, converted when they are whole seconds.
    `ts` is strictly increasing (checked before)."""
    if ts[-1] < MS_FROM:
        return ts
    if ts[0] < MS_FROM:
        i = bisect_left(ts, MS_FROM)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} mixes seconds and milliseconds with "
                         f"{ts[0]} on line 2")
    if any(t % 1000 for t in ts):
        i = next(i for i, t in enumerate(ts) if t % 1000)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} is in milliseconds but not on a whole second")
    if ts[-1] >= MS_FROM * 1000:
        i = bisect_left(ts, MS_FROM * 1000)
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} is neither unix seconds nor milliseconds")
    log.warning("%s: timestamps in milliseconds, read as seconds", path)
    return array("q", (t // 1000 for t in ts))


def _chunks(f: IO[str], first_line: int) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of about CHUNK characters of whole lines; trailing blanks dropped."""
    def read() -> str:
        text = f.read(CHUNK)
        return text + f.readline() if text else ""

    line, chunk = first_line, read()
    while chunk:
        following = read()
        if not following:
            chunk = chunk.rstrip()
        if chunk:
            chunk = chunk if chunk.endswith("\n") else chunk + "\n"
            yield line, chunk
            line += chunk.count("\n")
        chunk = following


def _parse_chunk(chunk: str, columns: list[array], path: Path, line: int) -> None:
    """Append the chunk's candles to the columns; a bad line raises InputError naming it."""
    n = chunk.count("\n")
    if chunk.count(",") == 5 * n:
        cells = chunk[:-1].replace("\n", ",").split(",")
        try:
            ts = array("q", map(int, cells[0::6]))
            values = [array("d", map(float, cells[k::6])) for k in range(1, 6)]
        except (ValueError, OverflowError):
            pass
        else:
            columns[0].extend(ts)
            for column, new in zip(columns[1:], values, strict=True):
                column.extend(new)
            return
    for i, text in enumerate(chunk[:-1].split("\n")):
        _check_line(text, path, line + i)
    raise AssertionError(f"{path}: no bad line found in a chunk that failed to parse")


def _check_line(text: str, path: Path, line: int) -> None:
    cells = text.split(",")
    if len(cells) != 6:
        raise InputError(f"{path}:{line}: {len(cells)} fields, not 6 ({HEADER}): {text[:80]!r}")
    try:
        ts, _ = int(cells[0]), [float(c) for c in cells[1:]]
    except ValueError:
        raise InputError(f"{path}:{line}: not a number in {text[:80]!r}") from None
    if not -(1 << 63) <= ts < 1 << 63:
        raise InputError(f"{path}:{line}: timestamp {cells[0][:30]} is out of range")


def _check_columns(path: Path, columns: list[array]) -> None:
    """Times strictly increasing, prices finite and positive, volumes finite and not negative."""
    ts = columns[0]
    if not all(map(lt, ts, islice(ts, 1, None))):
        i = next(i for i in range(1, len(ts)) if ts[i] <= ts[i - 1])
        raise InputError(f"{path}:{i + 2}: timestamp {ts[i]} does not follow {ts[i - 1]}: "
                         f"the rows must be in strictly increasing time")
    for name, column in zip(HEADER.split(",")[1:], columns[1:], strict=True):
        lowest = 0.0 if name == "volume" else math.ulp(0)
        if not math.isfinite(sum(column)) or min(column) < lowest:
            i = next(i for i, v in enumerate(column) if not math.isfinite(v) or v < lowest)
            raise InputError(f"{path}:{i + 2}: {name} {column[i]} is not a "
                             f"{'finite number >= 0' if name == 'volume' else 'positive price'}")


# --- the markets' order rules ------------------------------------------------------------------

KRAKEN_PAIRS = Path(__file__).parent.parent / "platforms" / "kraken_asset_pairs.json"


def kraken_rules() -> dict[str, Market]:
    """The default: the Kraken simulator's own table of pairs, as its AssetPairs serves it, saved in
    KRAKEN_PAIRS (tests/test_backtest_live.py checks the copy; importing the simulator would cost
    every backtest some 30 ms)."""
    global _KRAKEN
    if _KRAKEN is None:
        _KRAKEN = read_rules(KRAKEN_PAIRS)
    return _KRAKEN


_KRAKEN: dict[str, Market] | None = None


def read_rules(path: Path) -> dict[str, Market]:
    """--markets FILE: a saved reply of Kraken's AssetPairs (the whole reply, or its result)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise InputError(f"--markets {path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--markets {path}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]
    if not isinstance(data, dict) or not data:
        raise InputError(f"--markets {path}: expected Kraken's AssetPairs reply, an object of pairs")
    return _pairs(data, f"--markets {path}")


def _pairs(reply: dict[str, Any], where: str) -> dict[str, Market]:
    from includes.platforms.kraken_pairs import market_of_pair

    rules = {}
    for key, pair in reply.items():
        try:
            market = market_of_pair(key, pair)
        except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as exc:
            raise InputError(f"{where}: pair {str(key)[:40]!r} is malformed ({exc})") from None
        if market is not None:
            rules[market.symbol] = market
    return rules


def rules_for(series: Sequence[Series], *tables: Mapping[str, Market]) -> dict[str, Market]:
    """Each market's rules from the first table that lists it; a market none lists trades by the
    replay's FALLBACK, said in one warning line."""
    found = {s.market: next((t[s.market] for t in tables if s.market in t), None) for s in series}
    missing = [m for m, rules in found.items() if rules is None]
    if missing:
        log.warning("%s: no venue lists %s; traded by fine rules (price %d decimals, volume %d, minimum "
                    "cost %s)", ", ".join(missing), "it" if len(missing) == 1 else "them",
                    FALLBACK["price_decimals"], FALLBACK["volume_decimals"], FALLBACK["min_cost"])
    return {m: rules or fallback(m) for m, rules in found.items()}


def read_market_db(cfg: Config, start: int | None, end: int | None) -> tuple[list[Series], dict[str, Market]]:
    """The configured markets' candles in the market DB, as of now (a still-open candle is left out),
    and the order rules the DB keeps of the exchange's markets (available_markets lists them)."""
    from includes.storage import open_market_db

    interval, quote = cfg.market_data.candle_interval, cfg.trading.quote
    now = int(time.time())
    db = open_market_db(cfg)
    series = []
    try:
        for currency in cfg.trading.currencies:
            market = f"{currency}/{quote}"
            candles = [c for c in db.candles(cfg.exchange.name, market, interval, since=start, until=end)
                       if c.ts + interval * 60 <= now]
            if not candles:
                log.warning("%s: no %d-minute candles of %s in the market DB", market, interval,
                            cfg.exchange.name)
                continue
            columns: list[array] = [array("q", (c.ts for c in candles)),
                       *(array("d", (float(getattr(c, name)) for c in candles))
                         for name in ("open", "high", "low", "close", "volume"))]
            ts, o, h, lo, c, v = columns
            series.append(Series(market, interval, ts, o, h, lo, c, v, label=f"{cfg.exchange.name}_{currency}_{quote}"))
        rules = db.market_rules(cfg.exchange.name)
    finally:
        db.close()
    if not series:
        raise InputError(f"market DB {db.where}: no {interval}-minute candles of "
                         f"{', '.join(cfg.trading.currencies)} against {quote} on {cfg.exchange.name}")
    return series, rules
