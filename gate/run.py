"""The gate, end to end: generate (or take an existing video) → watermark → encode → measure → decide → sign →
verify → record → report → release or quarantine.

Output layout under ``out_dir``::

    staging/<run_id>/          work in progress (locked while its run is alive)
    released/<run_id>/         video.mp4 + record.json + report.html/.pdf + junit.xml + summary.md
    quarantine/<run_id>/       the same, for outputs that failed (they carry watermark and manifest too)

Crash safety: everything for a run is written inside its staging directory; the ledger row is appended (one SQLite
transaction) after the record is complete, and the staging directory becomes ``released/<run_id>`` or
``quarantine/<run_id>`` by a single atomic rename. So a video never sits in ``released/`` without its record, and
the ledger only ever holds complete rows. A run killed mid-way leaves a staging directory that the next run in the
same ``out_dir`` finishes (ledger row present: complete the move) or removes (no row: the video never left).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import secrets
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gate import media
from gate import policy as policy_mod
from gate.ledger import Ledger
from gate.measure import MeasureOutcome, measure_candidate
from gate.stamp import encode_watermarked, sign_and_verify
from provenance import watermark
from provenance.c2pa import ingredient_mime
from provenance.keys import SignerConfig, load_signer
from provenance.verify import VerifyReport
from reports import schema as S
from reports.atomic import write_text_atomic
from reports.environment import collect_environment
from reports.errors import ExitCode, Hallo3Error, InputError, ProvenanceError, UsageError
from reports.keyframes import make_keyframes
from reports.write import write_reports

VIDEO_NAME = "video.mp4"
RECORD_NAME = "record.json"
LOCK_NAME = ".lock"
Progress = Callable[[str], None]


@dataclass
class RunRequest:
    mode: str  # "generate" | "review"
    out_dir: Path
    portrait: Path
    audio: Path
    video: Path | None = None  # review mode
    prompt: str | None = None
    backend: str = "still"  # generate mode: a name from gate.backends
    model_dir: Path | None = None  # generate mode, hallo3: official or converted weights
    seed: int = 0
    steps: int | None = None
    policy_path: Path | None = None
    ledger_path: Path | None = None
    signer: SignerConfig | None = None
    trust_anchors_pem: bytes | None = None
    crf: int = 18
    fvd_reference: Path | None = None
    baseline_dir: Path | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    record: S.GateRecord
    directory: Path
    exit_code: ExitCode

    @property
    def video(self) -> Path:
        return self.directory / VIDEO_NAME


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or _now()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


# --- staging, locking, recovery -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _new_staging(staging_root: Path, run_id: str) -> Iterator[Path]:
    """Create ``staging_root/run_id`` already locked, and hold the lock while the run works in it.

    The directory is made under a hidden name, locked, then renamed into place, so a concurrent ``recover`` never
    sees it unlocked (the kernel releases the lock if the process dies; the lock follows the renamed directory).
    """
    hidden = staging_root / f".new-{run_id}"
    hidden.mkdir(parents=True)
    fd = os.open(hidden / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        staging = staging_root / run_id
        os.rename(hidden, staging)
        yield staging
    finally:
        os.close(fd)


def _try_lock(directory: Path) -> int | None:
    try:
        fd = os.open(directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _final_dir(out_dir: Path, decision: str, run_id: str) -> Path:
    return out_dir / ("released" if decision == "released" else "quarantine") / run_id


def _publish(staging: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, final)  # one atomic step: the video and its record arrive together
    with contextlib.suppress(FileNotFoundError):
        (final / LOCK_NAME).unlink()
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(out_dir: Path, ledger: Ledger) -> list[str]:
    """Finish or remove staging directories left by runs that died. Returns a line per directory handled."""
    notes: list[str] = []
    staging_root = out_dir / "staging"
    if not staging_root.is_dir():
        return notes
    for d in sorted(p for p in staging_root.iterdir() if p.is_dir()):
        fd = _try_lock(d)
        if fd is None:
            continue  # a live run holds it
        try:
            if d.name.startswith(".new-"):  # died between creating and naming its staging directory
                shutil.rmtree(d)
                continue
            row = ledger.find_by_run(d.name)
            if row is None:
                shutil.rmtree(d)
                notes.append(f"{d.name}: removed an incomplete run (no ledger row; nothing was released)")
                continue
            record = S.GateRecord.from_json(row.record_json).with_ledger(
                S.LedgerRecord(seq=row.seq, row_hash=row.row_hash, prev_hash=row.prev_hash, path=str(ledger.path))
            )
            write_reports(record, d, step_summary=False)
            final = _final_dir(out_dir, row.decision, d.name)
            if not final.exists():
                _publish(d, final)
                notes.append(f"{d.name}: finished an interrupted run ({row.decision})")
        finally:
            os.close(fd)
    return notes


# --- inputs ---------------------------------------------------------------------------------------------------------


def _file_ref(path: Path, media_type: str | None = None) -> S.FileRef:
    try:
        mt = media_type or ingredient_mime(path)
    except Hallo3Error:
        mt = "application/octet-stream"
    return S.FileRef.from_path(path, mt)


def _require_file(path: Path | None, what: str) -> Path:
    if path is None:
        raise UsageError(what, "is required")
    if not Path(path).is_file():
        raise InputError(str(path), f"{what} must be an existing file", "not found")
    return Path(path)


# --- the run --------------------------------------------------------------------------------------------------------


def run(req: RunRequest, progress: Progress | None = None) -> RunOutcome:
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        clock = now

    # 0. configuration, credentials and inputs are checked before any work (exit 2 / 5 / 4, nothing written)
    if req.mode not in {"generate", "review"}:
        raise UsageError("mode", "must be generate or review", req.mode)
    pol = policy_mod.load(req.policy_path)
    portrait = _require_file(req.portrait, "--reference/--portrait")
    audio_path = _require_file(req.audio, "--audio")
    video_in = _require_file(req.video, "VIDEO") if req.mode == "review" else None
    signer = load_signer(req.signer or SignerConfig.from_env())
    reference_rgb = media.read_image(portrait)
    ledger = Ledger(req.ledger_path)
    out_dir = Path(req.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for note in recover(out_dir, ledger):
        say(note)
    lap("prepare")

    run_id = req.run_id or new_run_id()
    staging = out_dir / "staging" / run_id
    try:
        with _new_staging(out_dir / "staging", run_id):
            return _run_locked(
                req,
                pol,
                signer,
                reference_rgb,
                portrait,
                audio_path,
                video_in,
                ledger,
                out_dir,
                run_id,
                staging,
                timings,
                lap,
                say,
            )
    except BaseException:
        # nothing reached the ledger: the staged work never left the system
        if staging.exists() and ledger.find_by_run(run_id) is None:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _produce(req: RunRequest, reference_rgb: np.ndarray, audio_path: Path, video_in: Path | None, say: Progress):
    """Frames, fps, audio and generator info: from a backend (generate) or from the reviewed file (review)."""
    from gate import backends

    if req.mode == "review":
        assert video_in is not None  # checked by run()
        say(f"reading {video_in}")
        clip = media.read_video(video_in)
        if clip.audio is not None and clip.sample_rate:
            audio, sr, audio_source = clip.audio, clip.sample_rate, "the reviewed video's own audio track"
        else:
            audio, sr = media.read_audio(audio_path)
            audio_source = f"{audio_path} (the reviewed video has no audio track)"
        gen = S.GeneratorInfo(
            backend="external",
            model_name="unknown (review mode)",
            config={"reviewed_video": str(video_in), "audio_source": audio_source},
        )
        return clip.frames, clip.fps, audio, sr, gen, []
    say(f"generating with backend {req.backend}")
    audio, sr = media.read_audio(audio_path)
    out, info, weights_used = backends.generate(
        req.backend,
        reference_rgb,
        audio,
        sr,
        prompt=req.prompt or "",
        seed=req.seed,
        model_dir=req.model_dir,
        steps=req.steps,
    )
    return out.frames, out.fps, out.audio, out.sample_rate, info, weights_used


def _run_locked(
    req, pol, signer, reference_rgb, portrait, audio_path, video_in, ledger, out_dir, run_id, staging, timings, lap, say
) -> RunOutcome:
    created_at = _now()
    # 1. generate / read
    frames, fps, audio, sr, gen_info, weights_used = _produce(req, reference_rgb, audio_path, video_in, say)
    lap("generate" if req.mode == "generate" else "read")

    # 2-3. watermark every frame with a payload naming this output, encode into staging
    payload = watermark.new_payload()
    candidate = staging / VIDEO_NAME
    say(f"watermarking {len(frames)} frames and encoding")
    encode_watermarked(frames, fps, audio, sr, candidate, payload=payload, crf=req.crf)
    del frames
    lap("watermark_encode")

    # 4. measure the encoded candidate: what is released is what is measured
    say("measuring the encoded candidate")
    clip = media.read_video(candidate)
    measured: MeasureOutcome = measure_candidate(
        clip.frames,
        clip.fps,
        clip.audio,
        clip.sample_rate,
        reference_rgb,
        needed=pol.metrics_needed(),
        fvd_reference=req.fvd_reference or _fvd_reference(pol),
    )
    weights_used = [*weights_used, *measured.weights]
    lap("measure")

    # 5. decide
    results = policy_mod.evaluate(pol, measured.measurements)
    if req.baseline_dir is not None or (pol.regression and pol.regression.baseline):
        baseline = baseline_means(Path(req.baseline_dir or pol.regression.baseline))  # type: ignore[union-attr]
        results += policy_mod.regression_checks(pol, measured.measurements, baseline)
    decision = policy_mod.decide(results)
    lap("decide")

    # 6-7. sign last, verify from disk (a provenance failure quarantines: the claim could not be proven)
    final = _final_dir(out_dir, decision.label, run_id)
    gate_results = {
        "run_id": run_id,
        "decision": decision.label,
        "reasons": list(decision.reasons),
        "policy": {"name": pol.name, "version": pol.version, "sha256": pol.sha256},
        "checks": [asdict(r) for r in results],
        "metrics": {k: m.value for k, m in measured.measurements.items()},
        "model": gen_info.model_dump(mode="json", include={"backend", "model_name", "seed", "model_sha256"}),
        "weights": {w["name"]: w["sha256"] for w in weights_used},
    }
    say("signing the C2PA manifest and verifying from disk")
    verify_report: VerifyReport | None = None
    provenance_reason = None
    try:
        _, verify_report = sign_and_verify(
            candidate,
            signer=signer,
            portrait=portrait,
            audio_path=audio_path,
            payload=payload,
            gate_results=gate_results,
            trust_anchors_pem=req.trust_anchors_pem,
            title=f"hallo3-gate {run_id}",
            generator={"name": f"{gen_info.backend}: {gen_info.model_name}", "version": _version()},
        )
    except ProvenanceError as exc:  # signing failed, or the signed file did not verify from disk
        provenance_reason = f"provenance: {exc.one_line()}"
        verify_report = getattr(exc, "report", None)  # what verification found, when it got that far
    lap("sign_verify")

    exit_code = decision.exit_code
    reasons = list(decision.reasons)
    released = decision.released
    if provenance_reason:
        released, exit_code = False, ExitCode.PROVENANCE
        reasons.append(provenance_reason)
        final = _final_dir(out_dir, "quarantined", run_id)

    # 8. record, reports, ledger
    record = build_record(
        req=req,
        run_id=run_id,
        created_at=created_at,
        released=released,
        exit_code=exit_code,
        reasons=reasons,
        portrait=portrait,
        audio_path=audio_path,
        video_in=video_in,
        candidate=candidate,
        final=final,
        clip=clip,
        gen_info=gen_info,
        weights_used=weights_used,
        measured=measured,
        results=results,
        payload=payload,
        verify_report=verify_report,
        provenance_reason=provenance_reason,
        pol=pol,
        timings=timings,
    )
    write_text_atomic(staging / RECORD_NAME, record.to_json())
    row = ledger.append(
        run_id=run_id,
        created_at=record.created_at.isoformat(),
        decision=record.decision,
        output_path=str(final / VIDEO_NAME),
        output_sha256=record.output.sha256,
        payload_hex=payload.hex(),
        record_json=record.to_json(),
    )
    record = record.with_ledger(
        S.LedgerRecord(seq=row.seq, row_hash=row.row_hash, prev_hash=row.prev_hash, path=str(ledger.path))
    )
    write_reports(record, staging)
    lap("record_report")

    # 9. release or quarantine: one atomic rename
    _publish(staging, final)
    say(f"{record.decision}: {final / VIDEO_NAME}")
    return RunOutcome(record, final, ExitCode(record.exit_code))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hallo3-gate")
    except metadata.PackageNotFoundError:
        return "unknown"


def _fvd_reference(pol: policy_mod.Policy) -> Path | None:
    refs = [c.reference_set for c in pol.checks if c.metric == "fvd" and c.reference_set]
    return Path(refs[0]) if refs else None


def baseline_means(run_dir: Path) -> dict[str, float]:
    """Mean of every measured metric over the records found under a baseline run directory."""
    values: dict[str, list[float]] = {}
    records = sorted(run_dir.rglob(RECORD_NAME))
    if not records:
        raise UsageError(str(run_dir), "baseline directory must contain gate records (record.json)", "none found")
    for p in records:
        rec = S.GateRecord.from_json(p.read_text())
        for m in rec.measurements:
            if m.value is not None:
                values.setdefault(m.name, []).append(m.value)
    return {k: float(np.mean(v)) for k, v in values.items()}


def _series(values: list[float | None] | None, label: str, fps: float) -> S.Series | None:
    if not values:
        return None
    return S.Series(label=label, values=values, fps=fps)


def build_record(
    *,
    req,
    run_id,
    created_at,
    released,
    exit_code,
    reasons,
    portrait,
    audio_path,
    video_in,
    candidate,
    final,
    clip,
    gen_info,
    weights_used,
    measured,
    results,
    payload,
    verify_report,
    provenance_reason,
    pol,
    timings,
) -> S.GateRecord:
    out_ref = _file_ref(candidate, "video/mp4")
    measurements = [
        S.MeasurementRecord.from_measurement(
            m, series=_series(measured.series.get(m.name), measured.series_labels.get(m.name, m.name), clip.fps)
        )
        for m in measured.measurements.values()
    ]
    checks = [
        S.CheckRecord(
            name=r.name,
            metric=r.metric,
            op=r.op,
            threshold=r.threshold,
            value=r.value,
            outcome=r.outcome,
            required=r.required,
            message=r.message,
        )
        for r in results
    ]
    wm = verify_report.watermark if verify_report is not None else None
    wm_detail = wm.detail if wm is not None else {}
    per_frame = wm_detail.get("bit_accuracy") if isinstance(wm_detail, dict) else None
    watermark_rec = S.WatermarkRecord(
        method=watermark.METHOD,
        payload=payload.hex(),
        payload_bits=len(payload) * 8,
        decoded_payload=wm.payload_hex if wm is not None else None,
        match=(wm.payload_hex == payload.hex()) if wm is not None else None,
        confidence=wm.confidence if wm is not None else None,
        bit_accuracy=float(np.mean(per_frame)) if per_frame else None,
        bit_accuracy_per_frame=S.Series(
            label="bit accuracy per decoded frame (the decoder samples a subset)", values=per_frame
        )
        if per_frame
        else None,
        frames_embedded=int(clip.frames.shape[0]),
        frames_decoded=wm.frames_decoded if wm is not None else None,
        reason=provenance_reason,
    )
    if verify_report is not None:
        man = verify_report.manifest
        leaf = man.signer_chain[0] if man.signer_chain else {}
        generators = [f"{g.get('name')} {g.get('version', '')}".strip() for g in man.claim_generator]
        prov = S.ProvenanceRecord(
            manifest_state=man.state or "Absent",
            failures=list(man.failure_codes),
            manifest_label=man.active_label,
            claim_generator=", ".join(generators) or None,
            signer_subject=leaf.get("subject") or man.signature.get("common_name"),
            signer_issuer=leaf.get("issuer") or man.signature.get("issuer"),
            signing_alg=man.signature.get("alg"),
            assertions=sorted(man.assertions),
            ingredients=[str(i.get("title")) for i in man.ingredients],
            soft_binding_alg=man.soft_binding.alg if man.soft_binding else None,
            soft_binding_payload=man.soft_binding.payload_hex if man.soft_binding else None,
            watermark_agrees=verify_report.agreement,
            verified=verify_report.verified,
        )
    else:
        prov = S.ProvenanceRecord(manifest_state="NotChecked", verified=False, reason=provenance_reason)
    inputs = S.Inputs(
        portrait=_file_ref(portrait),
        audio=_file_ref(audio_path),
        video=_file_ref(video_in, "video/x-unknown") if video_in is not None else None,
        prompt=req.prompt,
    )
    output = S.Output(
        **{**out_ref.model_dump(), "path": str(final / VIDEO_NAME)},
        staging_path=str(candidate),
        width=int(clip.frames.shape[2]),
        height=int(clip.frames.shape[1]),
        fps=float(clip.fps),
        frames=int(clip.frames.shape[0]),
        duration_s=float(clip.frames.shape[0] / clip.fps),
    )
    gen = gen_info
    if weights_used:
        gen = gen.model_copy(update={"weight_hashes": {w["name"]: w["sha256"] for w in weights_used}})
    return S.GateRecord(
        run_id=run_id,
        created_at=created_at,
        mode=req.mode,
        decision="released" if released else "quarantined",
        exit_code=int(exit_code),
        reasons=reasons,
        inputs=inputs,
        output=output,
        generator=gen,
        weights=[S.WeightRef(**{k: w[k] for k in ("name", "path", "sha256", "size", "licence")}) for w in weights_used],
        measurements=measurements,
        checks=checks,
        watermark=watermark_rec,
        provenance=prov,
        policy=S.PolicyRecord(name=pol.name, path=pol.path, sha256=pol.sha256, content=_policy_content(pol)),
        timings=dict(timings),
        environment=collect_environment(),
        keyframes=make_keyframes(clip.frames, clip.fps, count=6),
    )


def _policy_content(pol: policy_mod.Policy) -> dict[str, Any]:
    return tomllib.loads(pol.source)
