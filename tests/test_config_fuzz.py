"""Fuzz: random mutations of conf/config.example.yaml (keys deleted, wrong types, huge,
negative, NaN and overflowing numbers, unicode, long strings, NUL, hostile paths and URLs,
duplicate keys, YAML alias chains and bombs) through the real loader, then through a
dry-run cycle of the agent.  Each ends with exit 0, or exit 2 and one line per problem, each
naming the file (and the key); never a traceback, never a hang.

The exchange is the simulator, and every run is kept from the real exchanges: the keys
that name a server are never mutated, and a proxy that refuses everything catches any
request that would leave this host anyway.
"""
from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from includes.config import EXAMPLE_CONFIG, MOST_SHOWN, load_config
from includes.errors import ConfigError
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# Keys that name a server or pick a venue: a mutation there could reach the real internet.
PROTECTED = {("exchange",), ("exchange", "api_url"), ("exchange", "name"), ("exchange", "key_file"),
             ("market_data",), ("market_data", "coinmarketcap"), ("market_data", "coinmarketcap", "api_url"),
             ("market_data", "coinmarketcap", "key_file"), ("storage",), ("storage", "timeseries"),
             ("storage", "timeseries", "url"), ("backup",), ("backup", "destination"), ("paths",)}

HOSTILE = [None, True, False, 0, -1, 10 ** 400, -(10 ** 400), 2 ** 63, 1e308, 1e-300, math.inf, -math.inf, math.nan,
           "1e999999", "-1e999999", "1e-999999", "NaN", "Infinity", "0x10", "", " ", "x" * 5000, "\0", "a\0b",
           "é" * 300, "\u202eRTL", "../../../etc/passwd", "/dev/zero", "/dev/null", "/proc/self/mem", "/" * 5000,
           "mysql+pymysql://u:S3cretPW@h/db?connect_timeout=abc", "mysql+pymysql://u:S3cretPW@h:99999/db",
           "redis://", "redis://:S3cretPW@h:x/0", "unix:///tmp/r.sock", "sqlite:///", "sqlite:///\0",
           [], [1, "a"], {}, {"a": 1}, "1E+999999"]

COUNTS: Counter[str] = Counter()


def leaves(data: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the mapping, sections and settings alike."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((*path, key))
            found += leaves(value, (*path, key))
    return found


def safe(path: tuple[str, ...]) -> bool:
    return path not in PROTECTED


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: pytest.TempPathFactory, kraken_sim_module) -> dict[str, Any]:
    """The example config pointed at the simulator and at a directory of its own."""
    home = tmp_path_factory.mktemp("fuzz")
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["paths"] = {"log": str(home / "log"), "tmp": str(home / "tmp"), "img": str(home / "img")}
    data["exchange"].update(api_url=kraken_sim_module.url, timeout=2, retries=0, public_calls_per_second=1000)
    data["storage"].update(market_db=f"sqlite:///{home / 'market.db'}", state=f"sqlite:///{home / 'state.db'}")
    data["trading"].update(stop_file=str(home / "stop"), dry_run_file=str(home / "dry-run"), dry_run=True)
    data["__home"] = str(home)
    return data


@pytest.fixture(scope="module")
def kraken_sim_module():
    from simulators.kraken import KrakenSimulator

    sim = KrakenSimulator()
    sim.start()
    yield sim
    sim.stop()


def shared_bomb(depth: int, width: int) -> list:
    node: list = ["x"] * width
    for _ in range(depth):
        node = [node] * width
    return node


@st.composite
def mutants(draw: st.DrawFn, base: dict[str, Any]) -> tuple[str, list[str]]:
    """(YAML text, what was done)."""
    data = copy.deepcopy({k: v for k, v in base.items() if k != "__home"})
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in leaves(data) if safe(p)]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["delete", "hostile", "random", "bomb", "chain", "deep", "unknown"]))
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "hostile":
            parent[path[-1]] = draw(st.sampled_from(HOSTILE))
        elif kind == "random":
            parent[path[-1]] = draw(st.one_of(st.integers(), st.floats(), st.text(max_size=40),
                                              st.lists(st.integers(-5, 5), max_size=4), st.booleans()))
        elif kind == "bomb":
            parent[path[-1]] = shared_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 9)))
        elif kind == "chain":
            parent[path[-1]] = shared_bomb(draw(st.integers(1, 3)), 2)
        elif kind == "deep":
            nested: list = []
            for _ in range(draw(st.integers(5, 200))):
                nested = [nested]
            parent[path[-1]] = nested
        else:
            parent[draw(st.text(min_size=1, max_size=draw(st.sampled_from([8, 300]))))] = 1
        done.append(f"{kind} {'.'.join(map(str, path))[:60]}")
    text = yaml.dump(data, Dumper=yaml.SafeDumper, allow_unicode=draw(st.booleans()), sort_keys=False)
    if draw(st.integers(0, 9)) == 0:                      # a whole section, or one key, given twice
        section = draw(st.sampled_from([k for k in data if isinstance(data[k], dict) and data[k]] or ["trading"]))
        text += f"{section}:\n  {next(iter(data.get(section) or {'x': 1}))}: 1\n"
        done.append(f"duplicate {section}")
    return text, done


def judge(path: Path, status: int, stderr: str) -> str:
    """The outcome of one mutant; fails the test on a traceback or on a line that does not name the file."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    if status == 0:
        return "exit 0"
    assert status == 2, (status, stderr[-2000:])
    assert 1 <= len(lines) <= MOST_SHOWN + 1, stderr[:2000]
    for line in lines:
        assert len(line) < 650 and str(path) in line and "S3cretPW" not in line, line
    return "exit 2"


def loaded(path: Path) -> tuple[int, str]:
    """load_config as the scripts call it, and what every script does first with the result."""
    try:
        cfg = load_config(path)
        for p in (cfg.paths.log, cfg.paths.tmp, cfg.paths.img, cfg.trading.stop_file, cfg.trading.dry_run_file):
            cfg.path(p)
        _ = cfg.resolve_url(cfg.storage.market_db), cfg.resolve_url(cfg.storage.state)
        _ = cfg.trading.budget, cfg.trading.currency_cap   # properties that validate
    except ConfigError as exc:
        return 2, "".join(f"x: {line}\n" for line in str(exc).splitlines())   # as run_script prints it
    return 0, ""


def stays_in(cfg: Any, home: Path) -> bool:
    """Every file the run may write is under `home`: a mutant's relative path would be
    under the project itself, and an absolute one anywhere."""
    written = [cfg.path(p) for p in (cfg.paths.log, cfg.paths.tmp, cfg.paths.img)]
    written += [Path(cfg.resolve_url(u)[len("sqlite:///"):]) for u in (cfg.storage.market_db, cfg.storage.state)
                if u.startswith("sqlite:///")]
    return all(p.resolve().is_relative_to(home.resolve()) for p in written)


def test_config_mutants_load_or_fail_in_one_line_per_problem(base_config, tmp_path_factory):
    home = tmp_path_factory.mktemp("mutants")

    @settings(max_examples=800, deadline=5000, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        text, _ = data.draw(mutants(base_config))
        path = home / "config.yaml"
        path.write_text(text, encoding="utf-8")
        status, stderr = loaded(path)
        COUNTS[f"loader {judge(path, status, stderr)}"] += 1

    check()
    COUNTS["loader runs"] = COUNTS["loader exit 0"] + COUNTS["loader exit 2"]


def test_config_mutants_run_a_dry_cycle_or_fail_in_one_line_per_problem(base_config, tmp_path_factory):
    home = tmp_path_factory.mktemp("cycles")
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost")
    started = time.monotonic()

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        text, done = data.draw(mutants(base_config))
        path = home / "config.yaml"
        path.write_text(text, encoding="utf-8")
        assume(loaded(path)[0] == 0)       # the loader test has the others; these reach a cycle
        assume(stays_in(load_config(path), Path(base_config["__home"])))
        try:
            script = data.draw(st.sampled_from(["trade_agent", "get_api_data"]))
            run = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), "--config", str(path)],
                                 capture_output=True, text=True, timeout=60, env=env)
        except subprocess.TimeoutExpired:
            COUNTS["cycle hangs"] += 1
            raise AssertionError(f"hung for 60 s: {done}") from None
        COUNTS[f"cycle {judge(path, run.returncode, run.stderr)}"] += 1
        COUNTS[f"cycle {script}"] += 1

    in_project = set(ROOT.iterdir())
    check()
    assert set(ROOT.iterdir()) == in_project                  # nothing written into the project
    COUNTS["cycle runs"] = COUNTS["cycle exit 0"] + COUNTS["cycle exit 2"]
    print(f"\nfuzz counts ({time.monotonic() - started:.0f} s for the cycles): {dict(sorted(COUNTS.items()))}")
