"""The config: defaults, the documented example, and every kind of bad input."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from includes.config import (
    EXAMPLE_CONFIG,
    EXAMPLE_HEADER,
    MOST_SHOWN,
    Config,
    InvalidConfig,
    TradingConfig,
    load_config,
)
from includes.errors import ConfigError
from includes.files import read_key_file, read_token_file, write_private
from includes.settings import example_yaml

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message or path.name in message
    return message


def test_example_is_valid_and_equals_the_defaults():
    assert load_config(EXAMPLE_CONFIG) == Config()


def test_example_is_what_the_generator_writes():
    assert EXAMPLE_CONFIG.read_text() == example_yaml(Config, EXAMPLE_HEADER), \
        "conf/config.example.yaml differs from includes/config.py: run make config-example"


def test_generator_runs_as_a_module(tmp_path):
    run = subprocess.run([sys.executable, "-m", "includes.config", "--example"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == EXAMPLE_CONFIG.read_text()
    assert load_config(write(tmp_path, run.stdout)) == Config()


def _leaf_keys(section: type, prefix: str = "") -> set[str]:
    keys, hints = set(), typing.get_type_hints(section)
    for name in section.field_names():
        if dataclasses.is_dataclass(hints[name]):
            keys |= _leaf_keys(hints[name], f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _yaml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= _yaml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_example_documents_every_key():
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert _yaml_keys(example) == _leaf_keys(Config)
    lines = EXAMPLE_CONFIG.read_text().splitlines()
    line_of, path = {}, []
    for n, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            depth = (len(line) - len(line.lstrip())) // 2
            path[depth:] = [line.strip().split(":")[0]]
            line_of[".".join(path)] = n
    for key in _leaf_keys(Config):
        n = line_of[key]
        assert "#" in lines[n] or lines[n - 1].strip().startswith("#"), f"{key} has no comment"


def test_values_are_typed(tmp_path):
    cfg = load_config(write(tmp_path, "trading:\n  max_per_trade: 2.5\n  currencies: [ETH]\n"))
    assert cfg.trading.max_per_trade == Decimal("2.5")
    assert cfg.trading.currency_cap == 10
    assert cfg.trading.budget == Decimal("25.0")


def test_budget_capped_by_total_invest(tmp_path):
    cfg = load_config(write(tmp_path, "trading:\n  total_invest: 12\n"))
    assert cfg.trading.budget == Decimal(12)
    assert cfg.trading.currency_cap == 2  # ceil(10 / 5)


def test_empty_file_means_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


@pytest.mark.parametrize("text, expected", [
    ("trading:\n  max_thread: 4\n", "unknown key trading.max_thread (did you mean trading.max_threads?)"),
    ("tradng:\n  max_threads: 4\n", "unknown key tradng (did you mean trading?)"),
    ("trading:\n  max_threads: ten\n", "key trading.max_threads: must be a whole number (got 'ten')"),
    ("trading:\n  max_threads: 2.5\n", "key trading.max_threads: must be a whole number (got 2.5)"),
    ("trading:\n  max_threads: true\n", "key trading.max_threads: must be a whole number (got True)"),
    ("trading:\n  max_threads: 0\n", "key trading.max_threads: must be at least 1 (got 0)"),
    ("trading:\n  max_threads:\n", "key trading.max_threads: must be a whole number (got None)"),
    ("trading:\n  max_per_trade: -5\n", "key trading.max_per_trade: must be greater than 0 (got -5)"),
    ("trading:\n  max_per_trade: .nan\n", "key trading.max_per_trade: must be a finite number (got nan)"),
    ("trading:\n  sell_percent: 1000\n", "key trading.sell_percent: must be less than 1000 (got 1000)"),
    ("trading:\n  dry_run: 1\n", "key trading.dry_run: must be true or false (got 1)"),
    ("trading:\n  stop_file: 5\n", "key trading.stop_file: must be a path (a string) (got 5)"),
    ("trading:\n  currencies: BTC\n", "key trading.currencies: must be a list (got 'BTC')"),
    ("trading:\n  currencies: []\n", "key trading.currencies: must have at least 1 item (got [])"),
    ("trading:\n  currencies: [btc]\n",
     "key trading.currencies.0: must match the pattern ^[A-Z0-9]{1,16}$ (got 'btc')"),
    ("trading:\n  trend_windows: [0, 24]\n", "key trading.trend_windows: trend windows are hours between 1 and 720"),
    ("exchange:\n  timeout: 301\n", "key exchange.timeout: must be at most 300 (got 301)"),
    ("exchange:\n  name: ccxt\n", "key exchange: name ccxt needs ccxt_id"),
    ("market_data:\n  candle_interval: 7\n",
     "key market_data.candle_interval: must be one of 1, 5, 15, 30, 60, 240, 1440 (got 7)"),
    ("market_data:\n  cycle_minutes: 7\n",
     "key market_data.cycle_minutes: must divide 60, as a cron */N of minutes does: 1, 2, 3, 4, 5, 6, 10, 12, 15, "
     "20, 30 or 60 (got 7)"),
    ("market_data:\n  cycle_minutes: 0\n", "key market_data.cycle_minutes: must be at least 1 (got 0)"),
    ("market_data:\n  coinmarketcap:\n    keyfile: x\n",
     "unknown key market_data.coinmarketcap.keyfile (did you mean market_data.coinmarketcap.key_file?)"),
    ("plots:\n  zzz: 1\n", "unknown key plots.zzz (known keys here: markets, window_hours)"),
    ("storage:\n  org: x\n", ("unknown key storage.org (known keys here: market_db, namespace, spool_max_days, "
                              "spool_max_mb, state, timeout, timeseries)")),
    ("storage:\n  spool_max_mb: 0\n", "key storage.spool_max_mb: must be at least 1 (got 0)"),
    ("storage:\n  spool_max_mb: lots\n", "key storage.spool_max_mb: must be a number (got 'lots')"),
    ("storage:\n  spool_max_days: 99999\n", "key storage.spool_max_days: must be at most 3660 (got 99999)"),
    ("trading:\n  currencies: [BTC, BTC]\n", "lists a currency twice"),
    ("trading:\n  currencies: [EUR]\n", "EUR is the quote currency"),
    ("trading:\n  buy_trend_window: 5\n", "buy_trend_window: 5 is not one of trend_windows"),
    ("exchange:\n  name: binance\n", "key exchange.name: must be one of 'kraken', 'bittrex', 'ccxt' (got 'binance')"),
    ("exchange:\n  api_url: ftp://x\n", "key exchange.api_url: must start with http://"),
    ("storage:\n  market_db: postgres://x\n", "key storage.market_db: must be sqlite:///PATH"),
    ("storage: 5\n", "key storage: must be a mapping of keys (got 5)"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("trading:\n  max_threads: [1\n", "not valid YAML at line"),
    # numbers the code cannot use
    ("trading:\n  max_per_trade: '1e999999'\n", "key trading.max_per_trade: must be 0 or between 1e-12 and 1e+12"),
    ("trading:\n  max_per_trade: 1e-300\n", "key trading.max_per_trade: must be 0 or between 1e-12"),
    ("exchange:\n  public_calls_per_second: 1e-300\n", "key exchange.public_calls_per_second: must be at least 0.05"),
    ("exchange:\n  public_calls_per_second: 0.001\n", "must be at least 0.05 (got 0.001)"),
    ("exchange:\n  timeout: .inf\n", "key exchange.timeout: must be a finite number"),
    ("trading:\n  max_hold_hours: " + "9" * 400 + "\n",
     "must be a number between -1e+12 and 1e+12 (got a number of 400"),
    ("trading:\n  max_threads: " + "9" * 400 + "\n", "key trading.max_threads: must be a number between"),
    ("backup:\n  retention_days: 99999999\n", "key backup.retention_days: must be at most 36600"),
    # paths
    ("trading:\n  stop_file: \"a\\0b\"\n", "key trading.stop_file: must be a path: not empty, no NUL character"),
    ("trading:\n  stop_file: " + "x" * 300 + "\n", "key trading.stop_file: is too long for a path"),
    ("paths:\n  log: " + "/x" * 600 + "\n", "key paths.log: is too long for a path"),
    # URLs: parsed as their store parses them
    ("storage:\n  market_db: mysql+pymysql://u:pw@h/db?connect_timeout=abc\n",
     "key storage.market_db: option connect_timeout must be a whole number of seconds"),
    ("storage:\n  market_db: mysql+pymysql://u:pw@h/db?nope=1\n", "PyMySQL takes no option nope"),
    ("storage:\n  market_db: sqlite:///\n", "key storage.market_db: must be a path: not empty"),
    ("storage:\n  state: redis://\n", "key storage.state: must name its host: redis://HOST:PORT/DB (got 'redis://')"),
    ("storage:\n  state: unix:///run/redis.sock\n", "key storage.state: must be sqlite:///PATH or redis://"),
    ("storage:\n  state: redis://h:x/0\n", "key storage.state: is not a Redis URL"),
    ("storage:\n  state: redis://h/0?socket_timeout=abc\n", "key storage.state: has a bad option"),
    # YAML itself
    ("trading:\n  max_threads: 3\nplots: {}\ntrading:\n  max_threads: 4\n",
     "key trading is given twice, at lines 1 and 4; keep one"),
    ("trading:\n  max_threads: 3\n  max_threads: 4\n", "key max_threads is given twice, at lines 2 and 3"),
    ("trading: {max_threads: 3, max_threads: 4}\n", "key max_threads is given twice, at lines 1 and 1"),
    ("trading:\n  currencies: " + "[" * 900 + "]" * 900 + "\n", "nests values more than 32 levels deep"),
    ("a: &a [*a]\n", "nests values more than 32 levels deep"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    message = error_of(write(tmp_path, text))
    assert expected in message
    assert "\n" not in message and len(message) <= 600   # config.py cuts every message there


def test_every_problem_of_a_file_is_a_line_naming_its_key(tmp_path):
    path = write(tmp_path, "trading:\n  max_thread: 4\n  sell_percent: lots\nexchange:\n  timeout: 301\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    assert "unknown key trading.max_thread (did you mean trading.max_threads?)" in lines[0]
    assert "key trading.sell_percent: must be a number (got 'lots')" in lines[1]
    assert "key exchange.timeout: must be at most 300 (got 301)" in lines[2]


def test_a_file_full_of_problems_lists_the_first_few(tmp_path):
    path = write(tmp_path, "trading: {" + ", ".join(f"k{n}: 1" for n in range(MOST_SHOWN + 5)) + "}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == MOST_SHOWN + 1
    assert "unknown key trading.k0 " in lines[0]
    assert lines[-1] == f"{path}: and 5 more problems"


def test_secrets_never_reach_a_message(tmp_path):
    for text in ("storage:\n  market_db: mysql://crt:S3cret@db/x\n",
                 "storage:\n  market_db: mysql+pymysql://crt:S3c@ret@db/x?nope=1\n",
                 "storage:\n  state: redis://:S3cret@h:x/0\n",
                 "storage:\n  state: ['redis://:S3cret@h/0']\n",
                 "storage: {state: {a: 'redis://:S3cret@h/0'}}\n"):
        message = error_of(write(tmp_path, text))
        assert "S3c" not in message and "ret@" not in message, message
        assert "***@" in message, message


def test_alias_bombs_and_huge_values_are_refused_in_one_short_line(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)) + \
        "trading:\n  currencies: *i\n"
    message = error_of(write(tmp_path, bomb))
    assert message.endswith("holds more than 10000 values once its YAML aliases are expanded: "
                            "a config needs no more than a few hundred")
    # under the limit, shared lists are shown piece by piece, never expanded
    small = "trading:\n  quote: [&b [&a [x, y], *a, *a, *a], *b, *b, *b]\n"
    message = error_of(write(tmp_path, small))
    assert "key trading.quote: must be a string (got [[['x', 'y'], ['x', 'y'], " in message
    assert len(message) < 300
    message = error_of(write(tmp_path, "trading:\n  quote: " + "Q" * 1_000_000 + "\n"))
    assert len(message) < 300 and "…" in message
    message = error_of(write(tmp_path, "trading:\n  " + "k" * 1000 + ": 1\n"))
    assert len(message) <= 600 and "…" in message


def test_key_and_token_files_must_be_small_regular_files(tmp_path):
    big = tmp_path / "big.key"
    big.write_text("K\n" + "c2VjcmV0" * 10_000 + "\n")
    for path, expected in ((Path("/dev/zero"), "is not a regular file"), (tmp_path, "Is a directory"),
                           (big, r"holds \d+ bytes, more than a key ever needs")):
        with pytest.raises(ConfigError, match=expected):
            read_key_file(path, live=False)
        with pytest.raises(ConfigError, match=expected):
            read_token_file(path)


def test_from_dict_and_as_dict_round_trip():
    assert Config.from_dict(Config().as_dict()) == Config()
    assert Config.from_dict(Config().as_dict(json=True)) == Config()
    assert Config().as_dict(json=True)["trading"]["fee_percent"] == "0.26"
    trading = TradingConfig.from_dict({"max_threads": "5", "sell_percent": "2.5", "max_hold_hours": "5",
                                       "trend_windows": [24, 2, 2]})
    assert (trading.max_threads, trading.sell_percent, trading.max_hold_hours) == (5, Decimal("2.5"), 5.0)
    assert trading.trend_windows == [2, 24]
    with pytest.raises(InvalidConfig) as info:
        TradingConfig.from_dict({"quote": "eur", "max_threads": 0}, where="trading")
    assert isinstance(info.value, ValueError)
    assert info.value.problems == ["key trading.quote: must match the pattern ^[A-Z0-9]{1,16}$ (got 'eur')",
                                   "key trading.max_threads: must be at least 1 (got 0)"]
    assert str(info.value).endswith("(and 1 more problem)")


def test_missing_default_config_says_to_copy_the_example(monkeypatch):
    import includes.config as config
    monkeypatch.setattr(config, "DEFAULT_CONFIG", ROOT / "conf" / "no-such.yaml")
    with pytest.raises(ConfigError, match="no such file; copy conf/config.example.yaml"):
        config.load_config()


def test_unreadable_file(tmp_path):
    path = write(tmp_path, "log_level: INFO\n")
    path.write_bytes(b"\xff\xfe\x00bad")
    assert "cannot be read" in error_of(path)


def test_key_file_rules(tmp_path):
    key = tmp_path / "kraken.key"
    write_private(key, "KEY123\nc2VjcmV0\n")
    assert read_key_file(key, live=True) == ("KEY123", "c2VjcmV0")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others .*chmod 600"):
        read_key_file(key, live=True)
    assert read_key_file(key, live=False)[0] == "KEY123"  # dry-run and market data may
    write_private(key, "KEY123\n")
    with pytest.raises(ConfigError, match="needs two lines"):
        read_key_file(key, live=True)
    write_private(key, "KEY123\nnot*base64\n")
    with pytest.raises(ConfigError, match="line 2 .* not valid base64"):
        read_key_file(key, live=True)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_key_file(tmp_path / "absent.key", live=True)


def test_script_exits_2_with_one_line_per_problem(tmp_path):
    config = write(tmp_path, "trading:\n  sell_percent: lots\n")
    run = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "config.yaml: key trading.sell_percent: must be a number (got 'lots')" in lines[0]
    config = write(tmp_path, "trading:\n  sell_percent: lots\n  max_threads: 0\nlog_level: LOUD\n")
    run = subprocess.run([sys.executable, str(ROOT / "trade_agent.py"), "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert [line.split(": key ")[1].split(":")[0] for line in lines] == \
        ["trading.sell_percent", "trading.max_threads", "log_level"], lines
    assert all(line.startswith(f"trade_agent: {config}: ") for line in lines), lines
