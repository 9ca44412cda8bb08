"""The scripted life of a market order, shared by the exchange simulators: pending,
open with part filled, then closed or canceled, and a lag before it shows, counted in
the account's order lookups or in simulated seconds."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from includes.money import to_decimal

LIFECYCLE_UNITS = ("lookups", "seconds")
LIFECYCLE_ENDS = ("closed", "canceled")


@dataclass
class Lifecycle:
    """The script of one order placed under a `lifecycle` fault (each simulator's `inject`).

    `elapsed` counts units since placement: the account's order lookups, or
    simulated seconds.  Unit u (the u-th lookup, or the second ending at u) is
    in the pending stage while u <= pending, in the open stage while
    u <= pending + open, final after; the order is hidden while u <= hidden.
    What u = 0 (the placing reply) shows is each simulator's: Bittrex's always
    OPEN and unfilled, Kraken's skips a stage of length 0 (pending=open=0 fills
    at once, as without the fault).
    """
    pending: float = 0
    open: float = 0
    fill: Decimal | None = None  # fraction of the quantity executed on entering the open stage
    end: str = "closed"          # or "canceled": the rest is never executed
    hidden: float = 0
    unit: str = "lookups"        # or "seconds"
    elapsed: float = 0.0
    stage: str = "pending"       # then "open", then "done"

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Lifecycle:
        """Checked at inject time, so that a bad script fails the test that wrote it."""
        unknown = set(params) - {"pending", "open", "fill", "end", "hidden", "unit"}
        if unknown:
            raise ValueError(f"unknown lifecycle parameters: {', '.join(sorted(unknown))}")
        unit = params.get("unit", "lookups")
        if unit not in LIFECYCLE_UNITS:
            raise ValueError(f"lifecycle unit must be one of {', '.join(LIFECYCLE_UNITS)}, not {unit!r}")
        counts = {}
        for name in ("pending", "open", "hidden"):
            value = params.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                    unit == "lookups" and value != int(value)):
                raise ValueError(f"lifecycle {name} must be a number of {unit} >= 0, not {value!r}")
            counts[name] = value
        fill = params.get("fill")
        if fill is not None:
            fill = to_decimal(fill, "fill")
            if not 0 < fill < 1:
                raise ValueError(f"lifecycle fill must be a fraction between 0 and 1 (exclusive), not {fill}")
        end = params.get("end", "closed")
        if end not in LIFECYCLE_ENDS:
            raise ValueError(f"lifecycle end must be one of {', '.join(LIFECYCLE_ENDS)}, not {end!r}")
        return cls(counts["pending"], counts["open"], fill, end, counts["hidden"], unit)

    @property
    def lagging(self) -> bool:
        """Still invisible to the account's queries."""
        return self.hidden > 0 and self.elapsed <= self.hidden
