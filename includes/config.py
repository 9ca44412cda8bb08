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
    public_calls_per_second: float = setting(1.0, gt=0)
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
    max_hold_hours: float | None = setting(None, gt=0)
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


@dataclass(frozen=True)
class MarketDataConfig(Section):
    """Which markets to record and at which candle interval (minutes)."""

    markets: Literal["configured", "all"] = "configured"
    candle_interval: Literal[1, 5, 15, 30, 60, 240, 1440] = 5
    coinmarketcap: CoinMarketCapConfig = CoinMarketCapConfig()


@dataclass(frozen=True)
class TimeSeriesConfig(Section):
    """The optional InfluxDB-compatible time series the jobs also write to."""

    url: str | None = None
    org: str = "crontrader"
    bucket: str = "crontrader"
    token_file: Path | None = None
    timeout: float = setting(10.0, gt=0)


def _db_url(value: str) -> str:
    if not value.startswith(("sqlite:///", "mysql+pymysql://")):
        raise ValueError("must be sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB")
    return value


def _state_url(value: str) -> str:
    if not value.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
        raise ValueError("must be sqlite:///PATH or redis://HOST:PORT/DB")
    return value


@dataclass(frozen=True)
class StorageConfig(Section):
    """Where the market data and the agent's state live."""

    market_db: str = setting("sqlite:///tmp/crontrader.db", check=_db_url)
    state: str = setting("sqlite:///tmp/state.db", check=_state_url)
    namespace: str = setting("crontrader", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
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

    retention_days: int = setting(31, ge=1)
    destination: str | None = setting(None, check=_destination)
    ssh_key_file: Path | None = None
    ssh_port: int = setting(22, ge=1, le=65535)
    known_hosts_file: Path | None = None
    timeout: float = setting(60.0, gt=0, le=3600)
    batch: int = setting(5000, ge=1, le=8000)   # 4 key columns a row: SQLite takes 32,766 parameters


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
        # libyaml's loader when PyYAML has it (its wheels do): 1 ms for the example config, not 9
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{shown}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: the top level must be a mapping of keys, not a {type(data).__name__}")
    try:
        return Config.from_dict(data)
    except InvalidConfig as exc:
        raise ConfigError(f"{shown}: {exc}") from None


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
        problems.append(f"{_key(loc)}must be a mapping of keys (got {data!r})")
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
                problems.append(f"{_key(here)}{exc} (got {given!r})")
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
            problems.append(f"{_key(loc)}must be a list (got {given!r})")
            return _INVALID
        (item_type,) = get_args(tp)
        items = [_value(item_type, item, rules, (*loc, str(i)), problems) for i, item in enumerate(given)]
        if any(item is _INVALID for item in items):
            return _INVALID
        least = rules.get("min_length", 0)
        if len(items) < least:
            problems.append(f"{_key(loc)}must have at least {least} item{'s' if least > 1 else ''} (got {given!r})")
            return _INVALID
        return items
    try:
        return _within(_scalar(tp, given), rules)
    except ValueError as exc:
        problems.append(f"{_key(loc)}{exc} (got {given!r})")
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
        if isinstance(given, (str, Path)):
            return Path(given)
        raise ValueError("must be a path (a string)")
    if isinstance(given, bool):
        raise ValueError("must be a whole number" if tp is int else "must be a number")
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
    return f"key {'.'.join(loc)}: " if loc else ""


def _unknown(loc: tuple[str, ...], known: list[str]) -> str:
    """'unknown key a.b' with the nearest known key, else the list of them."""
    import difflib  # only on this error path: every cron start would pay its import

    close = difflib.get_close_matches(loc[-1], known, n=1)
    hint = f"did you mean {'.'.join((*loc[:-1], *close))}?" if close else \
        f"known keys here: {', '.join(sorted(known))}"
    return f"unknown key {'.'.join(loc)} ({hint})"


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


def read_key_file(path: Path, *, live: bool, check_base64: bool = True) -> tuple[str, str]:
    """(key, secret) from a two-line key file (krakenex's format).

    Live trading refuses a key file that group or others can read: the secret
    can move money.
    """
    shown = _shown(path)
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: the API key file cannot be read: {getattr(exc, 'strerror', exc) or exc}") from None
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
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{_shown(path)}: cannot be read: {getattr(exc, 'strerror', exc) or exc}") from None
    if not token:
        raise ConfigError(f"{_shown(path)}: is empty; it should hold the token on one line")
    return token
