"""Load conf/config.yaml and validate it.

pydantic rather than jsonschema: one declaration gives the validation, the
defaults and the typed object the code reads (Decimal money, Path files), and
each error carries the exact key path.  A jsonschema document would need a second,
hand-kept set of classes beside it.  The cost is its import (about 0.2 s here),
paid only by scripts that run, never by `--help`.

Every problem becomes one ConfigError line naming the file, the key and what is
wrong; scripts exit with status 2 on it.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import math
import os
import stat
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from includes.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "conf" / "config.yaml"
EXAMPLE_CONFIG = ROOT / "conf" / "config.example.yaml"

Currency = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")]
Percent = Annotated[Decimal, Field(gt=0, lt=1000)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeConfig(Section):
    name: Literal["kraken", "bittrex", "ccxt"] = "kraken"
    ccxt_id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")] | None = None  # ccxt's exchange name
    api_url: str | None = None  # None: the venue's own
    key_file: Path | None = None
    rate_tier: Literal["starter", "intermediate", "pro"] = "starter"
    public_calls_per_second: float = Field(default=1.0, gt=0)
    timeout: float = Field(default=15, gt=0, le=300)
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _ccxt_id(self) -> ExchangeConfig:
        if self.name == "ccxt" and self.ccxt_id is None:
            raise ValueError("name ccxt needs ccxt_id, ccxt's name of the exchange (e.g. kraken)")
        return self


class TradingConfig(Section):
    quote: Currency = "EUR"
    currencies: list[Currency] = Field(default=["BTC", "ETH", "LTC", "XRP", "ADA"], min_length=1)
    max_per_trade: Decimal = Field(default=Decimal(5), gt=0)
    max_threads: int = Field(default=10, ge=1, le=1000)
    total_invest: Decimal | None = Field(default=None, gt=0)
    threads_per_currency: int | None = Field(default=None, ge=1)
    sell_percent: Percent = Decimal(3)
    fee_percent: Decimal = Field(default=Decimal("0.26"), ge=0, lt=10)
    stop_loss_percent: Percent | None = None
    max_hold_hours: float | None = Field(default=None, gt=0)
    trend_windows: list[int] = Field(default=[2, 6, 12, 24, 48, 72], min_length=1)
    buy_trend_window: int = Field(default=24, ge=1)
    dry_run: bool = True
    dry_run_balance: Decimal = Field(default=Decimal(100), gt=0)
    dry_run_file: Path = Path("tmp/dry-run")
    stop_file: Path = Path("tmp/stop")

    @field_validator("currencies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a currency twice")
        return value

    @field_validator("trend_windows")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if any(w < 1 or w > 720 for w in value):
            raise ValueError("trend windows are hours between 1 and 720")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> TradingConfig:
        if self.quote in self.currencies:
            raise ValueError(f"currencies: {self.quote} is the quote currency and cannot be traded against itself")
        if self.buy_trend_window not in self.trend_windows:
            raise ValueError(f"buy_trend_window: {self.buy_trend_window} is not one of trend_windows")
        return self

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


class CoinMarketCapConfig(Section):
    api_url: str = "https://pro-api.coinmarketcap.com"
    key_file: Path | None = None


class MarketDataConfig(Section):
    markets: Literal["configured", "all"] = "configured"
    candle_interval: Literal[1, 5, 15, 30, 60, 240, 1440] = 5
    coinmarketcap: CoinMarketCapConfig = CoinMarketCapConfig()


class TimeSeriesConfig(Section):
    url: str | None = None
    org: str = "crontrader"
    bucket: str = "crontrader"
    token_file: Path | None = None
    timeout: float = Field(default=10, gt=0)


class StorageConfig(Section):
    market_db: str = "sqlite:///tmp/crontrader.db"
    state: str = "sqlite:///tmp/state.db"
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "crontrader"
    timeseries: TimeSeriesConfig = TimeSeriesConfig()

    @field_validator("market_db")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "mysql+pymysql://")):
            raise ValueError("must be sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB")
        return value

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            raise ValueError("must be sqlite:///PATH or redis://HOST:PORT/DB")
        return value


class PlotsConfig(Section):
    window_hours: int = Field(default=72, ge=1, le=24 * 366)
    markets: list[str] | None = None


class BackupConfig(Section):
    retention_days: int = Field(default=31, ge=1)
    destination: str | None = None
    ssh_key_file: Path | None = None
    ssh_port: int = Field(default=22, ge=1, le=65535)
    known_hosts_file: Path | None = None
    timeout: float = Field(default=60, gt=0, le=3600)
    batch: int = Field(default=5000, ge=1, le=8000)   # 4 key columns a row: SQLite takes 32,766 parameters

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be USER@HOST:/PATH or a local directory, not empty")
        return value


class PathsConfig(Section):
    log: Path = Path("log")
    tmp: Path = Path("tmp")
    img: Path = Path("img")


class Config(Section):
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
        data = yaml.safe_load(text)
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
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err, Config) for err in exc.errors()]
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ConfigError(f"{shown}: {problems[0]}{more}") from None


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as 'key a.b: problem', with a did-you-mean for unknown keys."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean {'.'.join(loc[:-1] + close)}?)" if close else \
            f" (known keys here: {', '.join(sorted(known))})"
        return f"unknown key {key}{hint}"
    if kind == "missing":
        return f"missing required key {key}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"key {key}: must be a mapping of keys (got {err.get('input')!r})"
    if not loc:
        return msg
    return f"key {key}: {msg} (got {err.get('input')!r})"


def _known_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


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
