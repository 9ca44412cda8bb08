"""Platform fixtures: a real KrakenPlatform (krakenex underneath) against a
started Kraken simulator with a funded account.

    def test_x(kraken_venue):
        kraken_venue.platform.buy(Decimal(5), "BTC", ref)   # the project's code
        kraken_venue.sim.balances(kraken_venue.key)         # the simulator's truth
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from includes.platforms.kraken import KrakenPlatform
from simulators.kraken import KrakenSimulator

START = 1_700_000_000  # a fixed simulated clock: every run sees the same prices


@dataclass
class KrakenVenue:
    sim: KrakenSimulator
    key: str
    secret: str
    state_dir: Path

    def platform(self, **options: object) -> KrakenPlatform:
        """Another client of the same account (another cron job sharing the key)."""
        settings = dict(api_url=self.sim.url, key=self.key, secret=self.secret, state_dir=self.state_dir,
                        public_calls_per_second=1000, timeout=2, retries=2)
        settings.update(options)
        return KrakenPlatform(**settings)


@pytest.fixture
def kraken_venue(tmp_path: Path) -> Iterator[KrakenVenue]:
    with KrakenSimulator(clock=START) as sim:
        key, secret = sim.add_account(balances={"ZEUR": "1000", "XXBT": "0.01"}, tier="pro")
        yield KrakenVenue(sim, key, secret, tmp_path)
