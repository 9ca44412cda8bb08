"""A whole configuration for running the jobs against the simulators.

    cfg = job_config(market_db=db_url, trading={"max_threads": 4})   # a validated Config
    tmp_path / "config.yaml"                      # the same, as a file for subprocess runs

Paths (log/, tmp/, img/, the stop and dry-run files) live in the test's tmp_path;
the exchange is the `kraken_venue` simulator with its funded key.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from includes.config import Config, load_config
from includes.files import write_private


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


@pytest.fixture
def job_config(tmp_path: Path, kraken_venue) -> Callable[..., Config]:
    key_file = tmp_path / "kraken.key"
    write_private(key_file, f"{kraken_venue.key}\n{kraken_venue.secret}\n")

    def make(market_db: str | None = None, state: str | None = None, **sections: Any) -> Config:
        data = {
            "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
            "exchange": {"api_url": kraken_venue.sim.url, "key_file": str(key_file),
                         "public_calls_per_second": 1000, "timeout": 2, "retries": 1},
            # 5 EUR a thread: the tests' figures were worked out for it (the default is 10)
            "trading": {"stop_file": str(tmp_path / "stop"), "dry_run_file": str(tmp_path / "dry-run"),
                        "max_per_trade": 5},
            "storage": {"market_db": market_db or f"sqlite:///{tmp_path / 'market.db'}",
                        "state": state or f"sqlite:///{tmp_path / 'state.db'}"},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(deep_merge(data, sections)))
        return load_config(path)

    return make
