"""Load conf/config.yaml and validate it.

Plain frozen dataclasses and one small validator (`_build`) rather than pydantic:
trade_agent.py starts from cron every few minutes on a Raspberry Pi with a budget
of 0.3 s and 50 MiB a start, and importing pydantic and building its models cost
about 0.15 s and 8 MB of that.  The standard library keeps what pydantic gave us:
one declaration still gives the validation, the defaults and the typed object the
code reads.  A field's annotation says its type (Decimal money, Path files,
Literal choices, lists, optional values, nested sections), `setting()` its default
and bounds, a section's `_check` its cross-field rules.  (jsonschema would need a
second, hand-kept set of classes beside the ones the code reads.)

Every problem becomes one ConfigError line naming the file, the key and what is
wrong; scripts exit with status 2 on it.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import math
import os
import re
import stat
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Self, Union, get_args, get_origin, get_type_hints

import yaml

from includes.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "conf" / "config.yaml"
EXAMPLE_CONFIG = ROOT / "conf" / "config.example.yaml"

CURRENCY = r"^[A-Z0-9]{1,16}$"
LARGEST = 10 ** 12          # no setting means more: larger numbers only overflow somewhere
SMALLEST = Decimal("1e-12")  # nor finer, in a Decimal
PATH_MAX, NAME_MAX = 1024, 255


# --- declaring settings ------------------------------------------------------------------------------

def setting(default: Any = dataclasses.MISSING, *, gt: Any = None, ge: Any = None, lt: Any = None,
            le: Any = None, pattern: str | None = None, min_length: int | None = None,
            check: Callable[[Any], Any] | None = None) -> Any:
    """A field's default and its rules, kept in the field's metadata where `_build` reads them.

    The bounds and the pattern apply to each number or string, so to each item of
    a list; min_length to the list itself.  check(value) runs last, on a value that
    is not None: it returns the value, perhaps normalized, or raises ValueError.
    A list default is copied for every instance, as dataclasses require.
    """
    rules = {name: rule for name, rule in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le), ("pattern", pattern),
                                           ("min_length", min_length), ("check", check)) if rule is not None}
    if isinstance(default, list):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata=rules)
    return dataclasses.field(default=default, metadata=rules)


class InvalidConfig(ValueError):
    """Settings that failed validation: `problems` holds one line each, str() the first and their count."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        super().__init__(f"{problems[0]}{more}")


class Section:
    """What every section shares; each subclass is a frozen dataclass of settings.

    Constructing one directly trusts its arguments (the code's defaults, tests);
    from_dict() is the way in for anything read from a file or a command line.
    """

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """The section of `data`, validated; `where` ("trading") prefixes the key paths of errors.

        Raises InvalidConfig, a ValueError, naming the key path of every problem.
        """
        problems: list[str] = []
        built = _build(cls, data, tuple(where.split(".")) if where else (), problems)
        if problems:
            raise InvalidConfig(problems)
        return built

    @classmethod
    def field_names(cls) -> list[str]:
        """The keys this section accepts, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def as_dict(self, *, json: bool = False) -> dict[str, Any]:
        """The settings as plain data that from_dict() takes back; with json, Decimals and Paths as strings."""
        return {name: _plain(getattr(self, name), json) for name in self.field_names()}

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        """Rules across fields: raise ValueError naming the keys involved."""


# --- the sections --------------------------------------------------------------------------------------

def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


@dataclass(frozen=True)
class ExchangeConfig(Section):
    """The venue: which platform class, where its API is, how politely to call it."""

    name: Literal["kraken", "bittrex", "ccxt"] = "kraken"
    ccxt_id: str | None = setting(None, pattern=r"^[a-z0-9_]{1,32}$")  # ccxt's exchange name
    api_url: str | None = setting(None, check=_http_url)  # None: the venue's own
    key_file: Path | None = None
    rate_tier: Literal["starter", "intermediate", "pro"] = "starter"
    public_calls_per_second: float = setting(1.0, ge=0.05, le=1000)   # at most 20 s between calls
    timeout: float = setting(15.0, gt=0, le=300)
    retries: int = setting(3, ge=0, le=10)

    def _check(self) -> None:
        if self.name == "ccxt" and self.ccxt_id is None:
            raise ValueError("name ccxt needs ccxt_id, ccxt's name of the exchange (e.g. kraken)")


def _unique(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("lists a currency twice")
    return value


def _windows(value: list[int]) -> list[int]:
    if any(w < 1 or w > 720 for w in value):
        raise ValueError("trend windows are hours between 1 and 720")
    return sorted(set(value))


@dataclass(frozen=True)
class TradingConfig(Section):
    """What the agent trades, with how much money, and when it buys and sells."""

    quote: str = setting("EUR", pattern=CURRENCY)
    currencies: list[str] = setting(["BTC", "ETH", "LTC", "XRP", "ADA"], pattern=CURRENCY, min_length=1,
                                    check=_unique)
    max_per_trade: Decimal = setting(Decimal(10), gt=0)
    max_threads: int = setting(10, ge=1, le=1000)
    total_invest: Decimal | None = setting(None, gt=0)
    threads_per_currency: int | None = setting(None, ge=1)
    sell_percent: Decimal = setting(Decimal(3), gt=0, lt=1000)
    fee_percent: Decimal = setting(Decimal("0.26"), ge=0, lt=10)
    stop_loss_percent: Decimal | None = setting(None, gt=0, lt=1000)
    max_hold_hours: float | None = setting(None, gt=0, le=24 * 3660)
    trend_windows: list[int] = setting([2, 6, 12, 24, 48, 72], min_length=1, check=_windows)
    buy_trend_window: int = setting(24, ge=1)
    rebuy_cooldown_minutes: float = setting(240.0, ge=0)   # backtests on ../shared/data: see the example config
    max_drawdown_percent: Decimal | None = setting(None, gt=0, lt=100)
    dry_run: bool = True
    dry_run_balance: Decimal = setting(Decimal(100), gt=0)
    dry_run_file: Path = Path("tmp/dry-run")
    stop_file: Path = Path("tmp/stop")

    def _check(self) -> None:
        if self.quote in self.currencies:
            raise ValueError(f"currencies: {self.quote} is the quote currency and cannot be traded against itself")
        if self.buy_trend_window not in self.trend_windows:
            raise ValueError(f"buy_trend_window: {self.buy_trend_window} is not one of trend_windows "
                             f"{self.trend_windows}")

    @property
    def currency_cap(self) -> int:
        """Threads one currency may hold: the configured cap, else an even share.

        The default, ceil(max_threads / number of currencies), keeps a single
        rising currency from taking every thread.
        """
        if self.threads_per_currency is not None:
            return self.threads_per_currency
        return max(1, math.ceil(self.max_threads / len(self.currencies)))

    @property
    def budget(self) -> Decimal:
        """max_threads x max_per_trade, capped by total_invest."""
        total = self.max_threads * self.max_per_trade
        return min(total, self.total_invest) if self.total_invest is not None else total


@dataclass(frozen=True)
class CoinMarketCapConfig(Section):
    """The optional CoinMarketCap source of market caps."""

    api_url: str = "https://pro-api.coinmarketcap.com"
    key_file: Path | None = None


def _divides_the_hour(value: int) -> int:
    if 60 % value:
        raise ValueError(f"must divide 60, as a cron */N of minutes does: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 "
                         f"or 60 (got {value})")
    return value


@dataclass(frozen=True)
class MarketDataConfig(Section):
    """Which markets to record, at which candle interval (minutes), and how often cron runs
    get_api_data and trade_agent (cycle_minutes: crontab.example's */10).  A cycle's candle
    calls fit in half of it, and status.py calls a job late after 3 cycles without success."""

    markets: Literal["configured", "all"] = "configured"
    candle_interval: Literal[1, 5, 15, 30, 60, 240, 1440] = 5
    cycle_minutes: int = setting(10, ge=1, le=60, check=_divides_the_hour)
    coinmarketcap: CoinMarketCapConfig = CoinMarketCapConfig()


@dataclass(frozen=True)
class TimeSeriesConfig(Section):
    """The optional InfluxDB-compatible time series the jobs also write to."""

    url: str | None = None
    org: str = "crontrader"
    bucket: str = "crontrader"
    token_file: Path | None = None
    timeout: float = setting(10.0, gt=0, le=300)


def _sqlite_url(value: str) -> bool:
    """True for sqlite:///PATH, with a path the store can open; ValueError when it cannot."""
    if not value.startswith("sqlite:///"):
        return False
    _scalar(Path, value[len("sqlite:///"):])
    return True


def _db_url(value: str) -> str:
    """Parsed now, as the market DB will parse it: a bad option is a config error, not a crash later."""
    if _sqlite_url(value):
        return value
    if not value.startswith("mysql+pymysql://"):
        raise ValueError("must be sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB")
    from includes.storage.marketdb import _mysql_args  # the store's own parser: one rule
    _mysql_args(value)
    return value


def _state_url(value: str) -> str:
    if _sqlite_url(value):
        return value
    if not value.startswith(("redis://", "rediss://")):
        raise ValueError("must be sqlite:///PATH or redis://HOST:PORT/DB")
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(value)
        parts.port                              # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        raise ValueError(f"is not a Redis URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("must name its host: redis://HOST:PORT/DB")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError("must end in a database number: redis://HOST:PORT/DB")
    if parts.query:
        from redis.connection import parse_url  # the client's own parser of the options
        try:
            parse_url(value)
        except ValueError as exc:
            raise ValueError(f"has a bad option: {exc}") from None
    return value


@dataclass(frozen=True)
class StorageConfig(Section):
    """Where the market data and the agent's state live."""

    market_db: str = setting("sqlite:///tmp/crontrader.db", check=_db_url)
    state: str = setting("sqlite:///tmp/state.db", check=_state_url)
    namespace: str = setting("crontrader", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # seconds a connect, a read or a write to MariaDB or Redis may take: a hung server then
    # counts as an unreachable one (the URL's connect/read/write_timeout options override it)
    timeout: float = setting(20.0, ge=1, le=600)
    # the spool (tmp/spool: rows waiting while the market DB is unreachable) is capped: past
    # either cap the oldest batches are dropped, and the run says so on stderr
    spool_max_mb: float = setting(200.0, ge=1, le=1_000_000)
    spool_max_days: float = setting(30.0, ge=1, le=3660)
    timeseries: TimeSeriesConfig = TimeSeriesConfig()


@dataclass(frozen=True)
class PlotsConfig(Section):
    """What the charts show."""

    window_hours: int = setting(72, ge=1, le=24 * 366)
    markets: list[str] | None = None


def _destination(value: str) -> str:
    if not value.strip():
        raise ValueError("must be USER@HOST:/PATH or a local directory, not empty")
    return value


@dataclass(frozen=True)
class BackupConfig(Section):
    """Where and how long the market data backups are kept."""

    retention_days: int = setting(31, ge=1, le=36600)
    destination: str | None = setting(None, check=_destination)
    ssh_key_file: Path | None = None
    ssh_port: int = setting(22, ge=1, le=65535)
    known_hosts_file: Path | None = None
    timeout: float = setting(60.0, gt=0, le=3600)
    batch: int = setting(5000, ge=1, le=8000)   # 4 key columns a row: SQLite takes 32,766 parameters


NOTIFY_EVENTS = ("fill", "refused", "doubt", "failed_run", "switch", "recovered", "summary")


def _apprise_url(value: str) -> str:
    if "://" not in value:
        raise ValueError("must be an Apprise URL (scheme://...), e.g. ntfy://topic or json://host/path")
    return value


@dataclass(frozen=True)
class NotifyTarget(Section):
    """One Apprise URL and the events it is sent."""

    url: str = setting(check=_apprise_url)
    events: list[Literal[NOTIFY_EVENTS]] = setting(list(NOTIFY_EVENTS), check=_unique)  # type: ignore[valid-type]


@dataclass(frozen=True)
class PingConfig(Section):
    """A dead man's switch per job: URL hit at start (/start), on success, and on failure (/fail)."""

    get_api_data: str | None = setting(None, check=_http_url)
    available_markets: str | None = setting(None, check=_http_url)
    trade_agent: str | None = setting(None, check=_http_url)
    plot_graphs: str | None = setting(None, check=_http_url)
    clean_and_backup_database: str | None = setting(None, check=_http_url)
    status: str | None = setting(None, check=_http_url)


@dataclass(frozen=True)
class NotifyConfig(Section):
    """Alerts through Apprise, and the jobs' pings."""

    urls: list[NotifyTarget] = setting([])
    ping: PingConfig = PingConfig()
    timeout: float = setting(10.0, gt=0, le=120)


@dataclass(frozen=True)
class PathsConfig(Section):
    """Directories for logs, scratch files and charts; relative ones are under ROOT."""

    log: Path = Path("log")
    tmp: Path = Path("tmp")
    img: Path = Path("img")


@dataclass(frozen=True)
class Config(Section):
    """The whole of conf/config.yaml; Config() is the defaults, which config.example.yaml spells out."""

    paths: PathsConfig = PathsConfig()
    exchange: ExchangeConfig = ExchangeConfig()
    trading: TradingConfig = TradingConfig()
    market_data: MarketDataConfig = MarketDataConfig()
    storage: StorageConfig = StorageConfig()
    plots: PlotsConfig = PlotsConfig()
    backup: BackupConfig = BackupConfig()
    notify: NotifyConfig = NotifyConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def path(self, value: Path | str) -> Path:
        """A file named in the config: relative names are relative to the project root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else ROOT / p

    def resolve_url(self, url: str) -> str:
        """sqlite:///tmp/x.db means ROOT/tmp/x.db, whatever the working directory of cron."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.path(url[len(prefix):]))
        return url


MOST_VALUES = 10_000   # a config holds about 100; YAML aliases can make billions of few lines
MOST_LEVELS = 32


class _Refused(yaml.YAMLError):
    """YAML that parses but that no config should be: a key twice, aliases expanding past MOST_VALUES."""


# libyaml's loader when PyYAML has it (its wheels do): 1 ms for the example config, not 9
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping: YAML keeps the last one silently."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:           # an unhashable key: the validator names it
                continue
            if first is not None:
                raise _Refused(f"key {_cut(str(key), 40)} is given twice, at lines {first} and {line}; "
                               f"keep one")
        return super().construct_mapping(node, deep=deep)


def _count_values(data: Any) -> None:
    """Refuse data whose aliases expand past MOST_VALUES, or that nests deeper than MOST_LEVELS:
    walked as the validator would, without recursion, and stopped as soon as it is too much."""
    stack, seen = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MOST_VALUES:
            raise _Refused(f"holds more than {MOST_VALUES} values once its YAML aliases are expanded: "
                           f"a config needs no more than a few hundred")
        if depth > MOST_LEVELS:
            raise _Refused(f"nests values more than {MOST_LEVELS} levels deep: a config needs 4")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for item in value.items() for v in item)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def load_config(path: Path | str | None = None) -> Config:
    """The validated config of `path` (default conf/config.yaml)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    shown = _shown(path)
    if not path.exists():
        hint = f"; copy {_shown(EXAMPLE_CONFIG)} to it and edit it" if path == DEFAULT_CONFIG else ""
        raise ConfigError(f"{shown}: no such file{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
        _count_values(data)
    except _Refused as exc:
        raise ConfigError(_line(f"{shown}: {exc}")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{shown}: not valid YAML{where}: {_cut(masked(problem), 200)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: the top level must be a mapping of keys, not a {type(data).__name__}")
    try:
        return Config.from_dict(data)
    except InvalidConfig as exc:
        raise ConfigError(_line(f"{shown}: {exc}")) from None


# --- the validator -------------------------------------------------------------------------------------

_INVALID = object()  # what _build and _value return once they have recorded a problem


def _build(cls: type[Section], data: Any, loc: tuple[str, ...], problems: list[str]) -> Any:
    """An instance of the section `cls` from the mapping `data` found at key path `loc`.

    Each problem is appended to `problems` as one line naming the key path; then
    the result is _INVALID.  Keys are taken in the file's order, so the first
    problem reported is the first one in the file.  Values are coerced by their
    annotation (_value), checked against their field's rules, then the section's
    _check runs.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        problems.append(f"{_key(loc)}must be a mapping of keys (got {_got(data)})")
        return _INVALID
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)
    before, values = len(problems), {}
    for name, given in data.items():
        here = (*loc, str(name))
        field = fields.get(name) if isinstance(name, str) else None
        if field is None:
            problems.append(_unknown(here, list(fields)))
            continue
        value = _value(hints[name], given, field.metadata, here, problems)
        check = field.metadata.get("check")
        if check is not None and value is not _INVALID and value is not None:
            try:
                value = check(value)
            except ValueError as exc:
                problems.append(f"{_key(here)}{exc} (got {_got(given)})")
        values[name] = value
    for name, field in fields.items():
        if name not in data and field.default is dataclasses.MISSING \
                and field.default_factory is dataclasses.MISSING:
            problems.append(f"missing required key {'.'.join((*loc, name))}")
    if len(problems) > before:
        return _INVALID
    try:
        return cls(**values)
    except ValueError as exc:
        problems.append(f"{_key(loc)}{exc}")
        return _INVALID


def _value(tp: Any, given: Any, rules: Mapping[str, Any], loc: tuple[str, ...], problems: list[str]) -> Any:
    """`given` as the annotation `tp` says, within `rules`; else _INVALID, the problem recorded."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # only `T | None` is used
        if given is None:
            return None
        (tp,) = [arg for arg in get_args(tp) if arg is not type(None)]
        return _value(tp, given, rules, loc, problems)
    if isinstance(tp, type) and issubclass(tp, Section):
        return _build(tp, given, loc, problems)
    if origin is list:
        if not isinstance(given, (list, tuple)):
            problems.append(f"{_key(loc)}must be a list (got {_got(given)})")
            return _INVALID
        (item_type,) = get_args(tp)
        items = [_value(item_type, item, rules, (*loc, str(i)), problems) for i, item in enumerate(given)]
        if any(item is _INVALID for item in items):
            return _INVALID
        least = rules.get("min_length", 0)
        if len(items) < least:
            problems.append(f"{_key(loc)}must have at least {least} item{'s' if least > 1 else ''} (got {_got(given)})")
            return _INVALID
        return items
    try:
        return _within(_scalar(tp, given), rules)
    except ValueError as exc:
        problems.append(f"{_key(loc)}{exc} (got {_got(given)})")
        return _INVALID


_WHOLE = re.compile(r"\s*[+-]?\d+(\.0*)?\s*")


def _scalar(tp: Any, given: Any) -> Any:
    """`given` as the single value type `tp`, or ValueError saying what it must be.

    Numbers come from numbers or numeric strings (--sweep passes strings), never
    from booleans; a bool only from a bool; a string only from a string.
    """
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        for choice in choices:
            if given == choice and type(given) is type(choice):
                return choice
        raise ValueError(f"must be one of {', '.join(map(repr, choices))}")
    if tp is bool:
        if isinstance(given, bool):
            return given
        raise ValueError("must be true or false")
    if tp is str:
        if isinstance(given, str):
            return given
        raise ValueError("must be a string")
    if tp is Path:
        if not isinstance(given, (str, Path)):
            raise ValueError("must be a path (a string)")
        text = str(given)
        if "\0" in text or not text.strip():
            raise ValueError("must be a path: not empty, no NUL character")
        if len(text) > PATH_MAX or any(len(part) > NAME_MAX for part in text.split("/")):
            raise ValueError(f"is too long for a path ({PATH_MAX} characters, {NAME_MAX} a name)")
        return Path(given)
    if isinstance(given, bool):
        raise ValueError("must be a whole number" if tp is int else "must be a number")
    if isinstance(given, int) and abs(given) > LARGEST or isinstance(given, str) and len(given) > 60:
        raise ValueError(f"must be a number between -{LARGEST:.0e} and {LARGEST:.0e}")
    if tp is int:
        if isinstance(given, int):
            return given
        if isinstance(given, float) and given.is_integer():
            return int(given)
        if isinstance(given, str) and _WHOLE.fullmatch(given):
            return int(Decimal(given.strip()))
        raise ValueError("must be a whole number")
    if tp is float:
        try:
            value = float(given) if isinstance(given, (int, float, str)) else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise ValueError("must be a number")
        if not abs(value) <= LARGEST:
            raise ValueError(f"must be a finite number between -{LARGEST:.0e} and {LARGEST:.0e}")
        return value
    if tp is Decimal:
        try:
            value = Decimal(str(given).strip()) if isinstance(given, (int, float, str, Decimal)) else None
        except InvalidOperation:
            value = None
        if value is None:
            raise ValueError("must be a number")
        if not value.is_finite():
            raise ValueError("must be a finite number")
        if value and not SMALLEST <= abs(value) <= LARGEST:  # money stays in Decimal's default context
            raise ValueError(f"must be 0 or between {SMALLEST:.0e} and {LARGEST:.0e} in size")
        return value
    raise TypeError(f"no rule for settings of type {tp!r}")  # a new annotation needs a branch here


def _within(value: Any, rules: Mapping[str, Any]) -> Any:
    """`value`, or ValueError naming the bound or pattern it breaks."""
    if "gt" in rules and not value > rules["gt"]:
        raise ValueError(f"must be greater than {rules['gt']}")
    if "ge" in rules and not value >= rules["ge"]:
        raise ValueError(f"must be at least {rules['ge']}")
    if "lt" in rules and not value < rules["lt"]:
        raise ValueError(f"must be less than {rules['lt']}")
    if "le" in rules and not value <= rules["le"]:
        raise ValueError(f"must be at most {rules['le']}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        raise ValueError(f"must match the pattern {rules['pattern']}")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The evaluated annotations of a section (they are strings under `from __future__ import annotations`)."""
    return get_type_hints(cls)


def _key(loc: tuple[str, ...]) -> str:
    return f"key {'.'.join(_cut(part, 40) for part in loc)}: " if loc else ""


def _line(text: str) -> str:
    """One printable line, whatever a key or a value held: line breaks and control
    characters escaped, the whole cut to what a mail subject can show."""
    return _cut("".join(c if c.isprintable() else repr(c)[1:-1] for c in text), 600)


def _cut(text: str, most: int = 60) -> str:
    """At most `most` characters, the cut shown by an ellipsis."""
    return text if len(text) <= most else text[:most - 1] + "…"


_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)\S*@")   # to the last @: a password may hold one


def masked(text: str) -> str:
    """`text` with the password of every URL's user:password@ replaced by ***."""
    return _PASSWORD.sub(r"\1***@", text)


def _got(value: Any, room: int = 80) -> str:
    """A value as an error line shows it: passwords masked, at most `room` characters, built
    piece by piece (a list's repr would expand every YAML alias in it, however many)."""
    if isinstance(value, Mapping) or isinstance(value, (list, tuple)):
        opening, closing = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
        text, items = opening, value.items() if isinstance(value, Mapping) else value
        for i, item in enumerate(items):
            if len(text) >= room - 2:
                return text + "…" + closing
            text += ", " if i else ""
            if isinstance(value, Mapping):
                text += _got(item[0], room - len(text)) + ": "
                item = item[1]
            text += _got(item, max(1, room - len(text)))
        return _cut(text, room - 1) + closing
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 60:
        return _cut(f"a number of {len(str(abs(value)))} digits", room)
    return _cut(repr(masked(value) if isinstance(value, str) else value), room)


def _unknown(loc: tuple[str, ...], known: list[str]) -> str:
    """'unknown key a.b' with the nearest known key, else the list of them."""
    import difflib  # only on this error path: every cron start would pay its import

    close = difflib.get_close_matches(_cut(loc[-1], 40), known, n=1)
    hint = f"did you mean {'.'.join(_cut(part, 40) for part in (*loc[:-1], *close))}?" if close else \
        f"known keys here: {', '.join(sorted(known))}"
    return f"unknown key {'.'.join(_cut(part, 40) for part in loc)} ({hint})"


def _plain(value: Any, json: bool) -> Any:
    if isinstance(value, Section):
        return value.as_dict(json=json)
    if isinstance(value, list):
        return [_plain(item, json) for item in value]
    if json and isinstance(value, (Decimal, Path)):
        return str(value)
    return value


# --- files the config names ----------------------------------------------------------------------------

def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


SECRET_FILE_MAX = 64 * 1024   # a key file is a few hundred bytes; /dev/zero or a log file is no key


def _read_secret(path: Path, what: str) -> tuple[int, str]:
    """(mode, text) of a small regular file: a device, a FIFO or a huge file is refused, not read."""
    shown = _shown(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{shown}: {what} is not a regular file; point the config at the file itself")
            if st.st_size > SECRET_FILE_MAX:
                raise ConfigError(f"{shown}: {what} holds {st.st_size} bytes, more than a key ever needs "
                                  f"({SECRET_FILE_MAX}); is it the right file?")
            return st.st_mode, f.read(SECRET_FILE_MAX + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: {what} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None


def read_key_file(path: Path, *, live: bool, check_base64: bool = True) -> tuple[str, str]:
    """(key, secret) from a two-line key file (krakenex's format).

    Live trading refuses a key file that group or others can read: the secret
    can move money.
    """
    shown = _shown(path)
    mode, text = _read_secret(path, "the API key file")
    lines = text.splitlines()
    if live and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{shown}: the API key file is readable by group or others "
                          f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {shown}")
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) < 2:
        raise ConfigError(f"{shown}: the API key file needs two lines, the key then the secret")
    key, secret = lines[0], lines[1]
    if check_base64:
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{shown}: line 2 (the secret) is not valid base64") from None
    return key, secret


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (key files made by the demo and tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def read_token_file(path: Path) -> str:
    """A one-line secret (CoinMarketCap key, InfluxDB token)."""
    token = _read_secret(path, "the token file")[1].strip()
    if not token:
        raise ConfigError(f"{_shown(path)}: is empty; it should hold the token on one line")
    return token
