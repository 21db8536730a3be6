"""The one table of metric specs: every metric a policy may name, with its label, unit, direction, scope and protocol.

This table is the single source for the names and directions that the policy (``gate.policy.KNOWN_METRICS``), the
record schema (``reports.schema.SET_LEVEL_METRICS``), the measuring code (every ``metrics.measurement.Measurement`` of
a metric takes its ``unit`` and ``higher_is_better`` from here) and the reports (``reports.compare``, the executive
scorecard's ``HEADLINE`` metrics) read.

Fields of ``MetricSpec``:

- ``name``: the key used in policies, records, ``hallo3-gate measure --json`` and result tables.
- ``label``: a short label for plots and tables ("Sync-C").
- ``unit``: the unit of the value; ``""`` is a dimensionless score (Sync-C, Sync-D, FVD, consent's 0/1).
- ``higher_is_better``: ``True`` / ``False``, or ``None`` for a metric with no better direction (an offset, a
  frame rate): described, never ranked or "won".
- ``scope``: ``"video"`` (a property of one video) or ``"set"`` (a distance between sets of videos, e.g. FVD).
- ``protocol``: one line saying how the value is measured.
- ``headline``: shown on the executive scorecard (``HEADLINE``).

Import-light on purpose (standard library only): the policy validator and the report renderers import it without
loading torch or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["video", "set"]
SCOPES: tuple[str, ...] = ("video", "set")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    unit: str
    higher_is_better: bool | None
    scope: Scope
    protocol: str
    headline: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.label:
            raise ValueError(f"metric spec {self.name!r}: name and label must not be empty")
        if self.scope not in SCOPES:
            raise ValueError(f"metric spec {self.name!r}: scope must be one of {SCOPES}, got {self.scope!r}")
        if not (self.higher_is_better is None or isinstance(self.higher_is_better, bool)):
            raise ValueError(f"metric spec {self.name!r}: higher_is_better must be True, False or None")
        if "\n" in self.protocol or not self.protocol.strip():
            raise ValueError(f"metric spec {self.name!r}: protocol must be one non-empty line")
        if self.headline and self.higher_is_better is None:
            raise ValueError(f"metric spec {self.name!r}: a headline metric needs a better direction")

    @property
    def arrow(self) -> str:
        """``"↑"`` when higher is better, ``"↓"`` when lower is better, ``""`` when neither."""
        return "" if self.higher_is_better is None else ("↑" if self.higher_is_better else "↓")

    @property
    def direction(self) -> str:
        """``"higher is better"``, ``"lower is better"`` or ``"no direction"``."""
        if self.higher_is_better is None:
            return "no direction"
        return "higher is better" if self.higher_is_better else "lower is better"


_SYNCNET = "syncnet_python: S3FD face tracks, SyncNet v2, vshift 15, 25 fps / 16 kHz"
_IDENTITY = "face embedding cosine similarity of each frame's face to the reference portrait (identity backend)"
_AVSYNC = "offline AV-sync: dlib inner-lip aperture vs 16 kHz log-RMS envelope, NCC over +-15 frames (not SyncNet)"
_PYAV = "decoded from the encoded candidate with PyAV"

_TABLE: tuple[MetricSpec, ...] = (
    MetricSpec("sync_c", "Sync-C", "", True, "video", f"{_SYNCNET}; clip = max confidence over tracks", True),
    MetricSpec("sync_d", "Sync-D", "", False, "video", f"{_SYNCNET}; clip = min distance over tracks", True),
    MetricSpec("sync_offset", "Sync offset", "frames", None, "video", f"{_SYNCNET}; audio-video offset of best track"),
    MetricSpec("identity_mean", "Identity", "cosine", True, "video", f"{_IDENTITY}; mean over frames", True),
    MetricSpec("identity_min", "Identity min", "cosine", True, "video", f"{_IDENTITY}; minimum over frames"),
    MetricSpec("identity_p10", "Identity p10", "cosine", True, "video", f"{_IDENTITY}; 10th percentile over frames"),
    MetricSpec("face_present_ratio", "Face present", "fraction", True, "video", "share of frames with a detected face"),
    MetricSpec("avsync_offset", "AV-sync offset", "frames", None, "video", f"{_AVSYNC}; lag of the NCC peak"),
    MetricSpec("avsync_corr", "AV-sync", "ncc", True, "video", f"{_AVSYNC}; NCC at the peak", True),
    MetricSpec(
        "fvd",
        "FVD",
        "",
        False,
        "set",
        "Frechet distance of I3D (Kinetics-400) features of generated vs reference clips",
        True,
    ),
    MetricSpec("fps", "FPS", "frames/s", None, "video", _PYAV),
    MetricSpec("width", "Width", "px", None, "video", _PYAV),
    MetricSpec("height", "Height", "px", None, "video", _PYAV),
    MetricSpec("duration_s", "Duration", "s", None, "video", f"{_PYAV}; frames / fps"),
    MetricSpec("frame_count", "Frames", "frames", None, "video", _PYAV),
    MetricSpec("audio_present", "Audio", "bool", True, "video", f"{_PYAV}; 1 when an audio track has samples"),
    MetricSpec("audio_video_drift_s", "A/V drift", "s", False, "video", f"{_PYAV}; |audio duration - video duration|"),
    MetricSpec(
        "consent",
        "Consent",
        "",
        True,
        "video",
        "consent registry: 1 when an active consent record matches the depicted person, 0 when none does",
    ),
)

SPECS: dict[str, MetricSpec] = {s.name: s for s in _TABLE}
if len(SPECS) != len(_TABLE):  # a name listed twice would silently keep only its last spec
    raise ValueError("metrics.specs: a metric name appears twice in the table")
HEADLINE: tuple[str, ...] = tuple(s.name for s in _TABLE if s.headline)


def spec(name: str) -> MetricSpec:
    """The spec of metric ``name``; ``KeyError`` naming the metric and the known ones when there is none."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(sorted(SPECS))})") from None


def set_level() -> frozenset[str]:
    """The metrics measured on a set of videos (``scope == "set"``), not on one video."""
    return frozenset(s.name for s in _TABLE if s.scope == "set")
