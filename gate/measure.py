"""Run every metric the gate (or ``hallo3-gate measure``) needs on one decoded clip, fail closed.

Each metric group runs behind a guard: a missing weight file, a metric that raises, an input it cannot score — all
become not-measured rows carrying the reason, never a crash of the run and never a pass. This is the only place
that turns weight names into paths for the metrics (through ``gate.weights``), and every path it hands over was
verified against its registry pin first: a weight file whose sha256 is wrong (or that is unpinned while the policy
forbids that) is never loaded; its metrics are not measured with the expected and actual hashes in the reason, and
``MeasureOutcome.refused_weights`` lists it so that the run can quarantine (exit 3) even if no required check reads
those metrics.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gate import weights
from gate.technical import measure_technical
from metrics.measurement import Measurement
from reports.errors import Hallo3Error

LIPSYNC = ("sync_c", "sync_d", "sync_offset")
IDENTITY = ("identity_mean", "identity_min", "identity_p10", "face_present_ratio")
AVSYNC = ("avsync_offset", "avsync_corr")
FVD = ("fvd",)
CONSENT = ("consent",)
ALL = (*LIPSYNC, *IDENTITY, *AVSYNC, *FVD)  # what ``measure`` runs by default; consent needs the gate's registry


@dataclass
class MeasureOutcome:
    measurements: dict[str, Measurement] = field(default_factory=dict)
    series: dict[str, list[float | None]] = field(default_factory=dict)  # per-frame, keyed by measurement name
    series_labels: dict[str, str] = field(default_factory=dict)
    weights: list[dict[str, Any]] = field(default_factory=list)  # verified files used: reports.schema.WeightRef fields
    refused_weights: list[str] = field(default_factory=list)  # why a weight file was refused (never loaded)
    allow_unpinned: bool = False  # the policy's [weights] allow_unpinned, under which ``weights`` were accepted
    # the identity backend and its embeddings of the output's faces (one per frame, None where no face), kept so the
    # consent check compares the same faces without embedding them again
    face_embeddings: tuple[Any, list[Any]] | None = field(default=None, repr=False)

    def add(self, ms: Iterable[Measurement]) -> None:
        for m in ms:
            self.measurements[m.name] = m

    def to_json(self) -> dict[str, Any]:
        """``{name: {"value": number|null, "reason": ..., "protocol": ..., ...}}`` for ``measure --json``."""
        return {k: m.to_dict() for k, m in self.measurements.items()}


def _series(values: np.ndarray | Iterable[float | None]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(f if f is not None and math.isfinite(f) else None)
    return out


def _guard(out: MeasureOutcome, names: tuple[str, ...], protocol: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except weights.WeightRefusedError as exc:
        if exc.rule not in out.refused_weights:
            out.refused_weights.append(exc.rule)
        out.add(Measurement.not_measured(n, exc.rule, protocol) for n in names if n not in out.measurements)
    except Hallo3Error as exc:
        reason = exc.one_line() if not exc.rule.startswith("not measured") else exc.rule
        out.add(Measurement.not_measured(n, reason, protocol) for n in names if n not in out.measurements)
    except Exception as exc:  # a metric that raises is not measured, with the reason; never a pass
        reason = f"not measured: {protocol} raised {type(exc).__name__}: {exc}"
        out.add(Measurement.not_measured(n, reason, protocol) for n in names if n not in out.measurements)


def _use(out: MeasureOutcome, name: str) -> weights.VerifiedWeight:
    """The registry file ``name``, verified against its pin before any metric loads it, and noted as used."""
    w = weights.use(name, allow_unpinned=out.allow_unpinned)
    if not any(r["name"] == name for r in out.weights):
        out.weights.append(w.to_ref())
    return w


@functools.lru_cache(maxsize=2)
def _i3d_extractor(safetensors: str, sha256: str) -> Any:  # keyed by content too: a re-derived file is reloaded
    from metrics.fvd import I3DFeatures

    return I3DFeatures.from_safetensors(safetensors)


def _convert_i3d(ckpt: Path, target: Path) -> None:
    from metrics.i3d import convert_to_safetensors

    convert_to_safetensors(ckpt, target)  # checks the checkpoint's sha256 again, then writes atomically


def i3d_extractor(out: MeasureOutcome | None = None) -> Any:
    """The I3D feature extractor from the registry's verified checkpoint (converted once to safetensors in the cache;
    the converted file is re-derived whenever it no longer matches the hash recorded when it was made)."""
    ckpt = _use(out, "i3d") if out is not None else weights.use("i3d")
    converted, sha256 = weights.derived_file(ckpt, "i3d-kinetics-400.safetensors", _convert_i3d)
    return _i3d_extractor(str(converted), sha256)


def measure_candidate(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None,
    sample_rate: int | None,
    reference_rgb: np.ndarray | None,
    *,
    needed: set[str] | None = None,
    fvd_reference: Path | None = None,
    allow_unpinned: bool = False,
    consent_db: Any = None,
) -> MeasureOutcome:
    """Every metric in ``needed`` (default: all that can run) on one clip. Technical checks always run.

    ``allow_unpinned`` is the policy's ``[weights] allow_unpinned``: whether a weight file without a registry pin may
    be used (it is then recorded as unpinned). ``consent`` (only when ``needed`` names it) matches the reference
    portrait and the clip's faces against the active records of ``consent_db`` (a ``gate.database.Database``; None:
    there is no registry yet, so no record)."""
    want = set(ALL if needed is None else needed)
    out = MeasureOutcome(allow_unpinned=allow_unpinned)
    out.add(measure_technical(frames, fps, audio, sample_rate))

    if want & set(LIPSYNC):
        _guard(out, LIPSYNC, "syncnet_python protocol", lambda: _lipsync(out, frames, fps, audio, sample_rate))
    track: list[Any] = []  # one face track serves identity and AV-sync (detection is their main cost)
    if want & set(IDENTITY):
        _guard(out, IDENTITY, "identity similarity", lambda: _identity(out, frames, reference_rgb, track))
    if want & set(AVSYNC):
        _guard(out, AVSYNC, "offline AV-sync", lambda: _avsync(out, frames, fps, audio, sample_rate, track))
    if "fvd" in want:
        _guard(out, FVD, "FVD (I3D)", lambda: _fvd(out, frames, fvd_reference))
    if "consent" in want:
        _guard(out, CONSENT, "consent registry", lambda: _consent(out, frames, reference_rgb, consent_db, track))
    return out


def _lipsync(out: MeasureOutcome, frames, fps, audio, sample_rate) -> None:
    from metrics.lipsync import measure_lipsync

    if audio is None or not sample_rate:
        out.add(
            Measurement.not_measured(n, "not measured: the clip has no audio track", "syncnet_python") for n in LIPSYNC
        )
        return
    syncnet, s3fd = _use(out, "syncnet").path, _use(out, "s3fd").path
    res = measure_lipsync(frames, fps, audio, sample_rate, syncnet_weights=syncnet, s3fd_weights=s3fd)
    out.add(res.measurements())
    if res.measured:
        out.series["sync_c"] = _series(res.framewise_confidence)
        out.series_labels["sync_c"] = "SyncNet confidence per frame (25 fps timeline, medfilt 9)"


def _face_track(out: MeasureOutcome, frames, track: list[Any]) -> Any:
    from metrics.faces import FaceDetector

    if not track:
        track.append(FaceDetector(_use(out, "dlib_landmarks_68").path).track(frames))
    return track[0]


def _identity_backend(out: MeasureOutcome) -> Any:
    from metrics.identity import FaceNetBackend

    return FaceNetBackend(_use(out, "dlib_landmarks_68").path, _use(out, "facenet").path)


def _identity(out: MeasureOutcome, frames, reference_rgb, track: list[Any]) -> None:
    from metrics.identity import measure_identity

    if reference_rgb is None:
        out.add(Measurement.not_measured(n, "not measured: no reference portrait given", "identity") for n in IDENTITY)
        return
    backend = _identity_backend(out)
    res = measure_identity(reference_rgb, frames, backend, track=_face_track(out, frames, track))
    if res.embeddings:
        out.face_embeddings = (backend, res.embeddings)
    out.add(res.measurements())
    out.series["identity_mean"] = _series(res.cosine)
    out.series_labels["identity_mean"] = f"cosine similarity to the reference portrait ({res.backend}), per frame"


def _avsync(out: MeasureOutcome, frames, fps, audio, sample_rate, track: list[Any]) -> None:
    from metrics.avsync import measure_avsync

    if audio is None or not sample_rate:
        out.add(
            Measurement.not_measured(n, "not measured: the clip has no audio track", "offline AV-sync") for n in AVSYNC
        )
        return
    res = measure_avsync(frames, fps, audio, sample_rate, track=_face_track(out, frames, track))
    out.add(res.measurements())


def _consent(out: MeasureOutcome, frames, reference_rgb, db: Any, track: list[Any]) -> None:
    """The policy metric ``consent`` (``gate.consent``): the reference portrait and the output's faces against the
    registry's active records, with the identity backend (and the embeddings) identity similarity used."""
    from gate import consent

    if reference_rgb is None:
        out.add([Measurement.not_measured("consent", "not measured: no reference portrait given", "consent registry")])
        return
    if out.face_embeddings is None:
        backend = _identity_backend(out)
        out.face_embeddings = (backend, backend.embed_frames(frames, _face_track(out, frames, track)))
    backend, embeddings = out.face_embeddings
    outcome = consent.match(db, reference_rgb, output_embeddings=embeddings, backend=backend)
    out.add([consent.measurement(outcome)])


def _fvd(out: MeasureOutcome, frames, fvd_reference: Path | None) -> None:
    from metrics.fvd import FVDState, measure_video_fvd

    if fvd_reference is None:
        out.add([Measurement.not_measured("fvd", "not measured: no FVD reference set given (--fvd-reference)", "FVD")])
        return
    reference = FVDState.load(fvd_reference)
    extractor = i3d_extractor(out)
    res = measure_video_fvd(frames, reference, extractor)
    out.add(res.measurements())
