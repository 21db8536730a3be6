"""One measured number, or the explicit reason it could not be measured.

Every metric returns its own rich result (per-frame series, per-track details ...) and can flatten it into
``Measurement`` rows, keyed by the names the gate, the policy and ``hallo3-gate measure --json`` use
(``sync_c``, ``sync_d``, ``sync_offset``, ``identity_mean``, ``identity_min``, ``avsync_offset``, ``avsync_corr`` ...).
A ``Measurement`` with ``value=None`` always carries a ``reason``: a number that could not be computed is never
reported as a pass, a zero, or silently dropped.

The unit and the direction (``higher_is_better``) of a metric named in ``metrics.specs.SPECS`` come from that table:
the measuring code names the metric and gives its value, and ``Measurement`` fills ``unit`` and ``higher_is_better``
from the spec (a not-measured row too). A value given explicitly that contradicts the spec is refused (``ValueError``):
one table, not two opinions. A name outside the table (a caller's own metric) keeps what it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from metrics.specs import SPECS


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | None
    protocol: str
    higher_is_better: bool | None = None
    unit: str = ""
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value is None and not self.reason:
            raise ValueError(f"measurement {self.name!r} has no value and no reason")
        if self.value is not None and not math.isfinite(float(self.value)):
            raise ValueError(f"measurement {self.name!r} is not finite: {self.value!r}")
        known = SPECS.get(self.name)
        if known is None:
            return
        if self.higher_is_better is None:
            object.__setattr__(self, "higher_is_better", known.higher_is_better)
        if not self.unit:
            object.__setattr__(self, "unit", known.unit)
        if self.higher_is_better != known.higher_is_better or self.unit != known.unit:
            raise ValueError(
                f"measurement {self.name!r}: higher_is_better={self.higher_is_better!r}, unit={self.unit!r} disagree "
                f"with metrics.specs (higher_is_better={known.higher_is_better!r}, unit={known.unit!r})"
            )
        object.__setattr__(self, "higher_is_better", known.higher_is_better)  # the table's bool, not e.g. numpy's

    @property
    def measured(self) -> bool:
        return self.value is not None

    @classmethod
    def not_measured(cls, name: str, reason: str, protocol: str = "", **kw: Any) -> Measurement:
        return cls(name=name, value=None, protocol=protocol, reason=reason, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": None if self.value is None else float(self.value),
            "protocol": self.protocol,
            "higher_is_better": self.higher_is_better,
            "unit": self.unit,
            "reason": self.reason,
            "details": self.details,
        }
