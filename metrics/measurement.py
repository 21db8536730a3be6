"""One measured number, or the explicit reason it could not be measured.

Every metric returns its own rich result (per-frame series, per-track details ...) and can flatten it into
``Measurement`` rows, keyed by the names the gate, the policy and ``hallo3-gate measure --json`` use
(``sync_c``, ``sync_d``, ``sync_offset``, ``identity_mean``, ``identity_min``, ``avsync_offset``, ``avsync_corr`` ...).
A ``Measurement`` with ``value=None`` always carries a ``reason``: a number that could not be computed is never
reported as a pass, a zero, or silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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
