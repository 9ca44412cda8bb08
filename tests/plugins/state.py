"""State store fixtures: every contract test runs on SQLite and on Redis."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from includes.storage.memory import MemoryStateStore
from includes.storage.state import StateStore, open_state_store
from tests.conftest import REDIS_URL


@pytest.fixture(params=["sqlite", "redis", "memory"])
def state_store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(url, prefix) of an empty state store of each kind ("memory": the backtest's)."""
    if request.param == "memory":
        return "memory", "crontrader"
    if request.param == "redis":
        return REDIS_URL, request.getfixturevalue("redis_namespace")
    return f"sqlite:///{tmp_path / 'state.db'}", "crontrader"


@pytest.fixture
def open_store(state_store_target: tuple[str, str]) -> Iterator[Callable[..., StateStore]]:
    """Opens more stores on the same target (another mode, another agent); closes them after."""
    opened: list[StateStore] = []
    shared: dict = {}  # memory stores of one test share their data, like clients of one server

    def open_(mode: str = "live") -> StateStore:
        url, prefix = state_store_target
        opened.append(MemoryStateStore(prefix, mode, data=shared) if url == "memory"
                      else open_state_store(url, prefix, mode=mode))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def state_store(open_store: Callable[..., StateStore]) -> StateStore:
    """A live-mode state store, empty, on SQLite then on Redis."""
    return open_store()
