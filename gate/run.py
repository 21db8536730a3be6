"""The gate, end to end: generate (or take an existing video) → watermark → encode → measure → decide → sign →
verify → record → report → release or quarantine.

Output layout and ownership of ``out_dir``: see ``gate.staging`` (``staging/``, ``pending/``, ``released/``,
``quarantine/``; the gate only ever touches directories it marked as its own, and never follows a symlink there).

Human review: when the policy has a ``[review]`` table, a run that passes every automated check is not released. It
is recorded as ``pending`` (ledger row ``kind="run", decision="pending", actor=<submitter>, role="submitter"``; the
record's ``review`` names the submitter and the policy's review rules), published to ``pending/<run_id>`` by the
same atomic rename, and the run exits 6 (``ExitCode.AWAITING_REVIEW``). People then approve or reject it in the
ledger (``gate.review``), and ``gate.staging.settle`` moves it to ``released/`` or ``quarantine/``. A run that
fails a check is quarantined at once, as without ``[review]``. The submitter is ``RunRequest.submitted_by``, else
``$HALLO3_GATE_USER``, else the OS user.

The order of a run, and what a failure at each point leaves:

1. ``prepare``: the policy, every input (portrait decoded, audio decoded, the reviewed video decoded in full, FVD
   reference loaded, baseline records read), the signing credentials, the ledger and ``--out`` are checked. The
   ledger is a locator (``gate.database``): an SQLite file — if it exists it must be a hallo3-gate ledger, if not its
   directory must let it be created — or a PostgreSQL URL: the database is opened read-only, so it must answer
   (else 74, naming the URL without its password) and be a hallo3-gate database or an empty one (else 4).
   Nothing has been written: an error here (exit 2/4/5, or 74 for an output place that cannot be written) leaves
   no directory and no ledger behind.
2. The output directories are created; interrupted runs are finished or rolled back (``gate.staging.recover``);
   this run's marked, locked staging directory is made.
3. In staging: the watermarked video, measurement, decision, the signed manifest verified from disk, then the record
   and every report (record.json, report.html, junit.xml, summary.md, report.pdf). Any failure up to here rolls the
   run back: its staging directory is removed, nothing is recorded or released. The work is two halves: ``produce``
   (generate or take the reviewed video, label, watermark, encode, decode, measure: a picklable ``Produced``) and
   ``finish`` (decide, sign, verify, compliance: a ``Candidate``). ``execute(inputs, produced=...)`` takes a
   ``Produced`` made elsewhere — another process, a Ray worker (``gate.evaluate``) — for this run id, and ``adopt``s
   its video into this run's staging directory once that is made and marked: the same contract holds.
4. The ledger (created now if it does not exist) gets the run's row, one transaction (serialised against every
   other writer, on SQLite and PostgreSQL alike): the commit point. A run rolled back before it removes its staging
   directory and the output directories it created, if empty.
5. ``record.json`` gets its ledger entry (one small write), and one atomic rename makes the staging directory
   ``released/<run_id>`` or ``quarantine/<run_id>``. A failure here (disk full, a kill) leaves a recorded run in
   staging: the next run in the same ``out_dir`` publishes it (recovery does only step 5's small write and
   rename), and this run exits 74 naming the path — never with a verdict.

Nothing written to disk names a PostgreSQL password: the staging marker and the record's ``ledger.path`` hold the
URL without it (``gate.staging.marker_ledger``, ``Ledger.display``).

So a row that says "released" exists only for a video that is in ``released/`` once recovery has run, a video is
never in ``released/`` without its record and reports, and the ledger only ever holds complete rows.

Test hook: ``HALLO3_GATE_TEST_KILL_AT=<stage>`` (read here only) makes the process SIGKILL itself at that stage, one
of ``KILL_STAGES``; the crash-safety tests use it. It is never set in normal use; an unknown stage is a usage error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import math
import os
import secrets
import shutil
import signal
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gate import compliance, label, media
from gate import config as gate_config
from gate import consent as consent_mod
from gate import policy as policy_mod
from gate.database import is_postgres, sqlite_path
from gate.ledger import Ledger
from gate.measure import MeasureOutcome, measure_candidate
from gate.staging import (
    VIDEO_NAME,
    Layout,
    check_layout,
    check_run_id,
    complete_record,
    discard,
    existing_ledger,
    ledger_locator,
    make_layout,
    nearest_existing,
    new_staging,
    publish,
    recover,
    remove_if_empty,
)
from gate.stamp import aigc_metadata, encode_watermarked, sign_and_verify
from provenance import watermark
from provenance.c2pa import ingredient_mime
from provenance.disclosure import Disclosure
from provenance.keys import SignerConfig, SignerHandle, load_signer
from provenance.verify import VerifyReport
from reports import schema as S
from reports.atomic import regular_file
from reports.environment import collect_environment
from reports.errors import ExitCode, Hallo3Error, InputError, OutputError, ProvenanceError, UsageError
from reports.keyframes import make_keyframes
from reports.markdown import append_step_summary
from reports.pdf import html_to_pdf
from reports.write import REPORT_FILES, write_reports

RECORD_NAME = REPORT_FILES["json"]
KILL_ENV = "HALLO3_GATE_TEST_KILL_AT"
USER_ENV = "HALLO3_GATE_USER"
MAX_USER_NAME = 200
KILL_STAGES = (
    "after_encode",  # the watermarked video is in staging
    "after_sign",  # the manifest is signed and verified from disk
    "mid_report",  # record.json, report.html, junit.xml, summary.md written; report.pdf not yet
    "after_report",  # every report written; no ledger row yet
    "after_ledger_append",  # the row is committed; record.json has no ledger entry yet; nothing published
    "mid_publish",  # record.json complete; the rename into released/ or quarantine/ not yet done
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """What the caller asks for (the CLI's arguments)."""

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
    sampler: str | None = None  # generate mode, Hallo3 backends: None = the official sampler
    policy_path: Path | None = None
    # the ledger's locator: an SQLite file or a PostgreSQL URL (gate.database); may hold a password: not in repr
    ledger_path: str | Path | None = field(default=None, repr=False)
    signer: SignerConfig | None = None
    trust_anchors_pem: bytes | None = None
    crf: int = 18
    fvd_reference: Path | None = None
    baseline_dir: Path | None = None
    run_id: str | None = None
    submitted_by: str | None = None  # who submits the run (None: $HALLO3_GATE_USER, else the OS user)
    config: gate_config.GateConfig | None = None  # the deployment's configuration (None: gate.config.load())
    # the watermark payload (None: a new random one, always, in normal use); fixed only where a test compares the
    # measurements of two runs of the same case (the payload changes the watermarked pixels' last digits)
    watermark_payload: bytes | None = field(default=None, repr=False)


class Decoded:
    """The reviewed video, decoded in full while the inputs are checked, and handed over once (``take``) so that its
    frames can be freed as soon as they are encoded: the run never holds two decoded copies of a long video."""

    def __init__(self, clip: media.Media | None) -> None:
        self._clip = clip

    def take(self) -> media.Media:
        clip, self._clip = self._clip, None
        if clip is None:
            raise RuntimeError("the reviewed video was already handed over (or there is none)")
        return clip


@dataclass(frozen=True)
class RunInputs:
    """Everything a run works from, validated before anything is written (``prepare``)."""

    request: RunRequest
    run_id: str
    policy: policy_mod.Policy
    signer: SignerHandle | None  # None: prepared to produce only (a worker never holds the signing key)
    portrait: Path
    reference_rgb: np.ndarray
    audio_path: Path
    speech: tuple[np.ndarray, int]  # the --audio file, decoded (mono float32, sample rate)
    video_in: Path | None  # review mode: the reviewed file ...
    reviewed: Decoded  # ... decoded in full (handed over once)
    fvd_reference: Path | None
    baseline: dict[str, float] | None  # means of the baseline run's metrics, when regression limits apply
    layout: Layout
    ledger_path: str = field(repr=False)  # the ledger's locator (SQLite path or PostgreSQL URL; may hold a password)
    kill_at: str | None  # the test hook's stage, if set
    submitted_by: str  # the submitter: the ledger row's actor
    config: gate_config.GateConfig  # the deployment's configuration (provider, retention)
    provider: str | None  # the provider named in the latent disclosures (None: none configured, none written)
    label_spec: label.LabelSpec | None  # the visible label the policy burns in (None: none)

    @property
    def mode(self) -> str:
        return self.request.mode


@dataclass(frozen=True)
class Candidate:
    """What the run made in staging, up to and including the signed manifest."""

    created_at: dt.datetime
    generator: S.GeneratorInfo
    weights: list[dict[str, Any]]  # reports.schema.WeightRef fields of every weight file used
    payload: bytes
    video: Path  # staging/<run_id>/video.mp4
    clip: media.Media  # the encoded candidate as decoded for measurement
    measured: MeasureOutcome
    results: list[policy_mod.CheckResult]
    decision: policy_mod.Decision
    verify_report: VerifyReport | None
    provenance_reason: str | None  # why signing/verification failed (the run is then quarantined, exit 5)
    review: policy_mod.ReviewPolicy | None = None  # the policy's [review]: a passing run waits for people
    disclosure: Disclosure | None = None  # the latent disclosure signed into the manifest
    label_check: label.LabelCheck | None = None  # the visible label found on the final frames
    compliance: list[S.ComplianceRow] = field(default_factory=list)  # the matrix of the final file
    compliance_reasons: list[str] = field(default_factory=list)  # rows the policy requires that are not met

    @property
    def passed(self) -> bool:
        """Every automated check passed, the provenance was proven and every required compliance row is met."""
        return self.decision.released and self.provenance_reason is None and not self.compliance_reasons

    @property
    def exit_code(self) -> ExitCode:
        if self.provenance_reason:
            return ExitCode.PROVENANCE
        if self.label == "pending":
            return ExitCode.AWAITING_REVIEW
        if self.decision.released and self.compliance_reasons:
            return ExitCode.GATE_FAILED
        return self.decision.exit_code

    @property
    def reasons(self) -> list[str]:
        if self.label == "pending":
            return [awaiting_review_note(self.review)]
        provenance = [self.provenance_reason] if self.provenance_reason else []
        return [*self.decision.reasons, *provenance, *self.compliance_reasons]

    @property
    def label(self) -> str:
        if not self.passed:
            return "quarantined"
        return "pending" if self.review is not None else "released"


@dataclass(frozen=True)
class Produced:
    """The first half of a run's work (``produce``): the watermarked, labelled, encoded video and its measurements.

    Picklable plain data (numpy arrays, paths, bytes, pydantic models, ``Measurement``s; the identity model the
    measurement used is dropped), so that a worker process can make it and the driver ``finish`` it. It holds the
    decoded candidate (``clip``: ``finish`` checks the visible label on its frames and the record takes keyframes
    from them) — one clip's frames, ``T*H*W*3`` bytes (a 5 s 512x512 clip at 25 fps: ~98 MB); a driver that runs
    many cases must drop each ``Produced`` once its run is recorded. ``video`` is where the encoded file lies;
    ``video_bytes`` carries it instead when it was made on another machine (``detached``)."""

    run_id: str
    created_at: dt.datetime
    generator: S.GeneratorInfo
    weights: list[dict[str, Any]]
    payload: bytes
    video: Path
    clip: media.Media
    measured: MeasureOutcome
    disclosure: Disclosure | None
    timings: dict[str, float]  # seconds per stage of the work so far (generate/read, watermark_encode, measure)
    video_bytes: bytes | None = field(default=None, repr=False)

    def detached(self) -> Produced:
        """This result with the encoded file's bytes inside (for a driver without the worker's filesystem); the
        file itself is left where it is (the worker removes its own directory)."""
        return replace(self, video_bytes=self.video.read_bytes())


def adopt(produced: Produced, staging: Path) -> Produced:
    """``produced`` with its video in ``staging`` (the run's staging directory): written from ``video_bytes``, or
    moved there (same filesystem) or copied; the result has no ``video_bytes``."""
    target = staging / VIDEO_NAME
    if produced.video == target and produced.video_bytes is None:
        return produced
    if os.path.lexists(target):
        raise OutputError(str(target), "the staging directory must not already hold a video", "exists")
    if produced.video_bytes is not None:
        with open(target, "xb") as f:
            f.write(produced.video_bytes)
            f.flush()
            os.fsync(f.fileno())
    else:
        try:
            os.rename(produced.video, target)
        except OSError:  # another filesystem: copy (the source stays for its owner to remove)
            shutil.copyfile(produced.video, target)
    return replace(produced, video=target, video_bytes=None)


def awaiting_review_note(review: policy_mod.ReviewPolicy | None) -> str:
    n = review.required_approvals if review is not None else 0
    people = "person" if n == 1 else "different people"
    rule = "; never the submitter (four eyes)" if review is not None and review.four_eyes else ""
    return f"awaiting human review: every automated check passed; {n} approval(s) by {people} needed{rule}"


@dataclass(frozen=True)
class RunOutcome:
    record: S.GateRecord
    directory: Path
    exit_code: ExitCode

    @property
    def video(self) -> Path:
        return self.directory / VIDEO_NAME


@dataclass
class Timer:
    """Seconds per stage of a run (``lap(stage)`` closes the stage that began at the previous lap)."""

    timings: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self.clock, 4)
        self.clock = now


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or _now()
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _kill_point(inputs: RunInputs, stage: str) -> None:
    """The crash-test hook: SIGKILL this process at ``stage`` when ``HALLO3_GATE_TEST_KILL_AT`` names it."""
    if inputs.kill_at == stage:
        os.kill(os.getpid(), signal.SIGKILL)


# --- 1. prepare: validate everything, write nothing -----------------------------------------------------------------


def _require_file(path: Path | None, what: str) -> Path:
    """An existing regular file (a FIFO or device is refused without opening it)."""
    if path is None:
        raise UsageError(what, "is required")
    return regular_file(path, what)


def _check_kill_hook() -> str | None:
    stage = os.environ.get(KILL_ENV) or None
    if stage is not None and stage not in KILL_STAGES:
        raise UsageError(KILL_ENV, f"test hook must name a stage: {', '.join(KILL_STAGES)}", stage)
    return stage


def _fvd_reference(req: RunRequest, pol: policy_mod.Policy) -> Path | None:
    """The FVD reference statistics (``--fvd-reference``, else the policy's fvd check), loaded once to prove they
    are statistics — a bad file is refused now (exit 4), whether or not the policy scores FVD."""
    from metrics.fvd import FVDState

    if req.fvd_reference is not None:
        path = _require_file(req.fvd_reference, "--fvd-reference")
    else:
        refs = [c for c in pol.checks if c.metric == "fvd" and c.reference_set]
        if not refs:
            return None
        path = _require_file(Path(str(refs[0].reference_set)), f"{pol.path}: checks.{refs[0].name}.reference_set")
    FVDState.load(path)
    return path


def _baseline(req: RunRequest, pol: policy_mod.Policy) -> dict[str, float] | None:
    source = req.baseline_dir or (pol.regression.baseline if pol.regression else None)
    return baseline_means(Path(source)) if source is not None else None


def _check_generator(req: RunRequest) -> None:
    from gate import backends

    backends.check_options(req.backend, req.steps, req.sampler)
    if req.backend == "hallo3":
        if req.model_dir is None:
            raise UsageError(
                "--model", "the hallo3 backend needs the weights directory (official release or converted)"
            )
        if not Path(req.model_dir).is_dir():
            raise UsageError("--model", "must be a directory", str(req.model_dir))


def _check_ledger(locator: str) -> Ledger | None:
    """The ledger, checked read-only (nothing is written); None where it holds nothing yet.

    SQLite: an existing file must be a hallo3-gate ledger; an absent one must be creatable later. PostgreSQL: the
    database must answer and be a hallo3-gate database, or one without its tables (created by the first append)."""
    found = existing_ledger(locator)
    if found is not None or is_postgres(locator):
        return found
    path = sqlite_path(locator)
    parent = nearest_existing(path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(str(path), "a new ledger must be creatable here", f"{parent} is not writable")
    return None


def submitter(name: str | None) -> str:
    """The submitter: ``name``, else ``$HALLO3_GATE_USER``, else the OS user; 1-200 printable characters."""
    where = "--submitted-by" if name else USER_ENV
    if not name:
        name = os.environ.get(USER_ENV) or None
    if not name:
        where = "--submitted-by"
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            raise UsageError(where, f"must name the submitter: no ${USER_ENV} and the OS user is unknown") from None
    if len(name) > MAX_USER_NAME or not name.strip() or not name.isprintable():
        raise UsageError(where, f"must be a name of 1-{MAX_USER_NAME} printable characters", name[:60])
    return name


def prepare(req: RunRequest, *, signing: bool = True) -> RunInputs:
    """Check the request completely; return the validated inputs. Writes nothing, whatever it raises.

    ``signing=False``: the inputs of ``produce`` only (a worker process): the signing credentials are not loaded
    (``finish`` refuses such inputs); everything else is checked the same."""
    if req.mode not in {"generate", "review"}:
        raise UsageError("mode", "must be generate or review", req.mode)
    kill_at = _check_kill_hook()
    submitted_by = submitter(req.submitted_by)
    run_id = check_run_id(req.run_id) if req.run_id is not None else new_run_id()
    pol = policy_mod.load(req.policy_path)
    config = req.config if req.config is not None else gate_config.load()
    provider = _provider(pol, config)
    label_spec = label.LabelSpec.from_policy(pol.disclosure) if pol.disclosure and pol.disclosure.visible else None
    if req.watermark_payload is not None and len(req.watermark_payload) != watermark.PAYLOAD_BYTES:
        raise UsageError("watermark_payload", f"must be {watermark.PAYLOAD_BYTES} bytes", len(req.watermark_payload))
    if not 0 <= req.crf <= 51:
        raise UsageError("--crf", "must be an H.264 CRF between 0 and 51", req.crf)
    if req.mode == "generate":
        _check_generator(req)
    portrait = _require_file(req.portrait, "--reference/--portrait")
    audio_path = _require_file(req.audio, "--audio")
    video_in = _require_file(req.video, "VIDEO") if req.mode == "review" else None
    for ingredient in (portrait, audio_path):  # signed into the manifest at the end: refuse now, not after the work
        ingredient_mime(ingredient)
    fvd_reference = _fvd_reference(req, pol)
    baseline = _baseline(req, pol)
    ledger_path = ledger_locator(req.ledger_path)
    ledger = _check_ledger(ledger_path)
    if req.run_id is not None and ledger is not None and ledger.find_by_run(run_id):
        raise UsageError("run_id", "must be new: the ledger already records a run with this id", run_id)
    layout = check_layout(Path(req.out_dir))
    signer = load_signer(req.signer or SignerConfig.from_env()) if signing else None
    reference_rgb = media.read_image(portrait)  # decoding last: the cheap checks answer first
    speech = media.read_audio(audio_path, ingredient=True)  # the speech is signed in as an audio ingredient
    clip = media.read_video(video_in) if video_in is not None else None
    if clip is not None and label_spec is not None:  # the label must fit the reviewed frames: refuse now
        label.template(label_spec, int(clip.frames.shape[2]), int(clip.frames.shape[1]))
    if req.mode == "generate" and "consent" in pol.metrics_needed():
        _refuse_without_consent(ledger, portrait, reference_rgb, pol)
    return RunInputs(
        request=req,
        run_id=run_id,
        policy=pol,
        signer=signer,
        portrait=portrait,
        reference_rgb=reference_rgb,
        audio_path=audio_path,
        speech=speech,
        video_in=video_in,
        reviewed=Decoded(clip),
        fvd_reference=fvd_reference,
        baseline=baseline,
        layout=layout,
        ledger_path=ledger_path,
        kill_at=kill_at,
        submitted_by=submitted_by,
        config=config,
        provider=provider,
        label_spec=label_spec,
    )


# the compliance rows whose evidence is the latent disclosure: a policy that requires one needs a provider to name
DISCLOSURE_ROWS = ("eu-ai-act-50-2", "ca-sb942-latent", "cn-gb45438-implicit")


def _provider(pol: policy_mod.Policy, config: gate_config.GateConfig) -> str | None:
    """The provider named in this run's disclosures: the policy's ``[disclosure] provider``, else the configuration's
    (``gate.config``). A policy that requires a disclosure row refuses to run without one (exit 2): there is no
    built-in provider name."""
    where = f"{pol.path}: disclosure.provider"
    provider = gate_config.provider_name(config, pol.disclosure.provider if pol.disclosure else None, where)
    needs = [row for row in DISCLOSURE_ROWS if row in pol.compliance_required]
    if provider is None and needs:
        raise UsageError(
            f"${gate_config.ENV_PROVIDER}",
            f"a provider name must be configured: policy {pol.name!r} requires {', '.join(needs)}, whose latent "
            f"disclosure names the provider (set ${gate_config.ENV_PROVIDER}, [provider] name in "
            f"{config.path or gate_config.default_path()}, or [disclosure] provider in the policy)",
            "none configured",
        )
    return provider


def _refuse_without_consent(
    ledger: Ledger | None, portrait: Path, reference_rgb: np.ndarray, pol: policy_mod.Policy
) -> None:
    """Generate mode: nothing is generated of a person without an active consent record matching the reference
    portrait (``gate.consent``); else ``ConsentRefused`` (exit 1) with the reason, before anything is written. A
    portrait without a face is a bad input (exit 4): there is nobody to match."""
    backend = consent_mod.identity_backend(allow_unpinned=pol.allow_unpinned_weights)
    if backend.embed_image(reference_rgb) is None:
        raise InputError(
            str(portrait), "portrait must show a face: the depicted person's consent is matched by it", "no face found"
        )
    outcome = consent_mod.match(ledger.db if ledger is not None else None, reference_rgb, backend=backend)
    if not outcome.matched:
        raise consent_mod.ConsentRefused.from_outcome(outcome)


# --- 2-5. the run ---------------------------------------------------------------------------------------------------


def run(req: RunRequest, progress: Progress | None = None) -> RunOutcome:
    """A whole gate run: ``prepare`` (writes nothing), then ``execute``."""
    timer = Timer()
    inputs = prepare(req)
    return execute(inputs, progress, timer=timer)


def execute(
    inputs: RunInputs,
    progress: Progress | None = None,
    *,
    produced: Produced | None = None,
    timer: Timer | None = None,
    step_summary: bool = True,
) -> RunOutcome:
    """Steps 2-5 of a prepared run. Without ``produced`` the work is done here (``produce`` then ``finish``); with
    it, a ``Produced`` made elsewhere (another process, a Ray worker: ``gate.evaluate``) for THIS run (same run id)
    is adopted into the run's staging directory (``adopt``) and only ``finish``, the record, the ledger row and the
    publication happen here — the crash-safety contract is the same, since the staging directory is made and
    marked before the produced video enters it. ``step_summary=False``: nothing is appended to
    ``$GITHUB_STEP_SUMMARY`` (a suite writes one summary of its own)."""
    if produced is not None and produced.run_id != inputs.run_id:
        raise UsageError("run_id", f"the produced video belongs to run {produced.run_id}", inputs.run_id)
    say = progress or (lambda _msg: None)
    timer = timer or Timer()
    created = make_layout(inputs.layout)  # the first write
    try:
        for note in recover(inputs.layout, inputs.ledger_path):
            say(note)
        timer.lap("prepare")
        with new_staging(inputs.layout, inputs.run_id, inputs.ledger_path) as staging:
            ledger, decision = _work_and_record(inputs, staging, timer, say, produced)
            final = inputs.layout.final_dir(decision, inputs.run_id)
            record = _publish(inputs, ledger, staging, final, decision)
    except BaseException:
        if not _has_row(inputs.ledger_path, inputs.run_id):  # rolled back: the directories it made go too, if empty
            remove_if_empty(created)
        raise
    say(f"{record.decision}: {final / VIDEO_NAME}")
    if step_summary:
        _append_step_summary(record, final)
    return RunOutcome(record, final, ExitCode(record.exit_code))


def _work_and_record(
    inputs: RunInputs, staging: Path, timer: Timer, say: Progress, produced: Produced | None = None
) -> tuple[Ledger, str]:
    """Steps 3-4: everything in staging, then the ledger row (the ledger is created here if it does not exist, so an
    error found while working leaves none behind); returns the ledger and the decision recorded. Any failure before
    the row rolls the run back (an ``OSError`` becomes an ``OutputError`` saying so)."""
    try:
        if produced is None:
            produced = produce(inputs, staging, timer, say)
        else:
            produced = adopt(produced, staging)
            timer.timings.update(produced.timings)
            timer.clock = time.perf_counter()
        candidate = finish(inputs, produced, timer, say)
        del produced
        final = inputs.layout.final_dir(candidate.label, inputs.run_id)
        record = build_record(inputs, candidate, final, timer.timings)
        say("writing the record and the reports")
        _write_reports(inputs, record, staging)
        timer.lap("record_report")
        _kill_point(inputs, "after_report")
        ledger = Ledger(inputs.ledger_path, create=True)
        ledger.append(
            run_id=inputs.run_id,
            created_at=record.created_at.isoformat(),
            decision=record.decision,
            output_path=str(final / VIDEO_NAME),
            output_sha256=record.output.sha256,
            payload_hex=candidate.payload.hex(),
            record_json=record.to_json(),
            kind="run",
            actor=inputs.submitted_by,
            role="submitter",
        )
    except BaseException as exc:
        if _roll_back(inputs.ledger_path, inputs.run_id, staging) and isinstance(exc, OSError):
            path = exc.filename or staging
            raise OutputError(
                str(path), "gate outputs must be writable; nothing was recorded or released", exc.strerror
            ) from None
        raise
    _kill_point(inputs, "after_ledger_append")
    return ledger, record.decision


def _has_row(ledger_path: str, run_id: str) -> bool:
    """Whether the run's ledger row exists — True also when the ledger cannot be read, so nothing is undone then."""
    try:
        ledger = existing_ledger(ledger_path)
        return ledger is not None and ledger.find_by_run(run_id) is not None
    except Hallo3Error:
        return True


def _roll_back(ledger_path: str, run_id: str, staging: Path) -> bool:
    """Remove the staging directory of a run that has no ledger row; True if it was rolled back. With a row (the
    append committed before the failure), or if the ledger cannot be read, the directory stays for recovery."""
    if _has_row(ledger_path, run_id):
        return False
    with contextlib.suppress(OSError):
        discard(staging)
    return True


def _publish(inputs: RunInputs, ledger: Ledger, staging: Path, final: Path, decision: str) -> S.GateRecord:
    """Step 5: the ledger entry into record.json, one rename; returns the complete record. After the row, a failure
    is an I/O error (74) that the next run's recovery completes — never a verdict."""
    try:
        row = ledger.find_by_run(inputs.run_id)
        if row is None:  # cannot happen after a committed append; refuse rather than publish unrecorded
            raise OutputError(ledger.display, "the run's ledger row must be readable after the append", "none")
        record = complete_record(staging, row, ledger.display)
        _kill_point(inputs, "mid_publish")
        publish(staging, final)
    except (OSError, Hallo3Error) as exc:
        if isinstance(exc, Hallo3Error):
            where, why = exc.subject, exc.value if exc.value is not None else exc.rule
        else:
            where, why = exc.filename or staging, exc.strerror or type(exc).__name__
        raise OutputError(
            str(where),
            f"could not be written: run {inputs.run_id} is recorded in the ledger as {decision} but not yet "
            "published; the next gate run with this --out publishes it",
            why,
        ) from None
    return record


def _append_step_summary(record: S.GateRecord, final: Path) -> None:
    try:
        append_step_summary(record)
    except OSError as exc:
        raise OutputError(
            str(exc.filename or "$GITHUB_STEP_SUMMARY"),
            f"the step summary could not be appended; the run was published as {record.decision} in {final}",
            exc.strerror,
        ) from None


def _write_reports(inputs: RunInputs, record: S.GateRecord, staging: Path) -> None:
    """Every report, into staging, before the ledger row: the PDF (the slow one) last, from the HTML just written."""
    paths = write_reports(record, staging, pdf=False, step_summary=False)
    _kill_point(inputs, "mid_report")
    html_to_pdf(paths["html"].read_text(encoding="utf-8"), staging / REPORT_FILES["pdf"])


# --- 3. the work in staging -----------------------------------------------------------------------------------------


class _Source(NamedTuple):
    """What the watermark is embedded into: frames, fps and audio, and what made them."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int | None
    generator: S.GeneratorInfo
    weights: list[dict[str, Any]]


def _frames(inputs: RunInputs, say: Progress) -> _Source:
    """Frames, fps, audio and generator info: from a backend (generate) or from the reviewed file (review)."""
    from gate import backends

    if inputs.mode == "review":
        clip = inputs.reviewed.take()
        if clip.audio is not None and clip.sample_rate:
            audio, sr, audio_source = clip.audio, clip.sample_rate, "the reviewed video's own audio track"
        else:
            (audio, sr), audio_source = inputs.speech, f"{inputs.audio_path} (the reviewed video has no audio track)"
        gen = S.GeneratorInfo(
            backend="external",
            model_name="unknown (review mode)",
            config={"reviewed_video": str(inputs.video_in), "audio_source": audio_source},
        )
        return _Source(clip.frames, clip.fps, audio, sr, gen, [])
    req = inputs.request
    say(f"generating with backend {req.backend}")
    audio, sr = inputs.speech
    try:
        out, info, weights_used = backends.generate(
            req.backend,
            inputs.reference_rgb,
            audio,
            sr,
            prompt=req.prompt or "",
            seed=req.seed,
            model_dir=req.model_dir,
            steps=req.steps,
            sampler=req.sampler,
            allow_unpinned=inputs.policy.allow_unpinned_weights,
        )
    except InputError as exc:  # generators get arrays and name them "portrait"/"audio": name the user's file
        files = {"portrait": inputs.portrait, "audio": inputs.audio_path}
        if exc.subject not in files:
            raise
        raise InputError(str(files[exc.subject]), exc.rule, exc.value) from None
    return _Source(out.frames, out.fps, out.audio, out.sample_rate, info, weights_used)


def produce(inputs: RunInputs, staging: Path, timer: Timer | None = None, say: Progress | None = None) -> Produced:
    """The first half of the work (step 3): generate (or take the reviewed video), burn the visible label, watermark,
    encode into ``staging/video.mp4`` with the AIGC metadata, decode it and measure it (consent included). Writes
    nothing but that file: no ledger row, no record. ``staging`` may be a run's staging directory or any private
    directory (a worker's temporary one; ``Produced.detached`` then carries the file's bytes to the driver)."""
    timer = timer or Timer()
    say = say or (lambda _msg: None)
    created_at = _now()
    source = _frames(inputs, say)
    gen_info, weights_used = source.generator, source.weights
    timer.lap("generate" if inputs.mode == "generate" else "read")

    # the visible label goes into the frames first (the watermark and every measurement see the labelled frames), then
    # the watermark with a payload naming this output; encoded into staging with the AIGC implicit label (metadata)
    payload = inputs.request.watermark_payload or watermark.new_payload()
    disclosure = _disclosure(inputs, created_at, gen_info, weights_used)
    video = staging / VIDEO_NAME
    frames: Any = source.frames
    if inputs.label_spec is not None:
        say(f"burning the visible label {inputs.label_spec.text!r} into the frames")
        frames = label.burn(frames, source.fps, inputs.label_spec)
    say(f"watermarking {len(source.frames)} frames and encoding")
    encode_watermarked(
        frames,
        source.fps,
        source.audio,
        source.sample_rate,
        video,
        payload=payload,
        crf=inputs.request.crf,
        metadata=aigc_metadata(disclosure, payload),
    )
    del source, frames
    timer.lap("watermark_encode")
    _kill_point(inputs, "after_encode")

    # measure the encoded candidate: what is released is what is measured
    say("measuring the encoded candidate")
    pol = inputs.policy
    clip = media.read_video(video)
    measured = measure_candidate(
        clip.frames,
        clip.fps,
        clip.audio,
        clip.sample_rate,
        inputs.reference_rgb,
        needed=pol.metrics_needed(),
        fvd_reference=inputs.fvd_reference,
        allow_unpinned=pol.allow_unpinned_weights,
        consent_db=_consent_db(inputs),
    )
    # one entry per file: the puppet backend and the face metrics both use the dlib landmark model
    weights_used = list({(w["name"], w["path"], w["sha256"]): w for w in [*weights_used, *measured.weights]}.values())
    timer.lap("measure")
    measured.face_embeddings = None  # the identity backend (a model) and embeddings: only consent needed them
    return Produced(
        run_id=inputs.run_id,
        created_at=created_at,
        generator=gen_info,
        weights=weights_used,
        payload=payload,
        video=video,
        clip=clip,
        measured=measured,
        disclosure=disclosure,
        timings=dict(timer.timings),
    )


def finish(inputs: RunInputs, produced: Produced, timer: Timer | None = None, say: Progress | None = None) -> Candidate:
    """The second half (still step 3, in the run's staging directory, where ``produced.video`` must be: ``adopt``):
    decide, sign the C2PA manifest and verify it from disk, the compliance matrix of the final file."""
    timer = timer or Timer()
    say = say or (lambda _msg: None)
    if inputs.signer is None:
        raise UsageError("inputs", "finish needs inputs prepared with the signing credentials", "signing=False")
    if produced.video != inputs.layout.staging / inputs.run_id / VIDEO_NAME:
        raise UsageError("produced.video", "must be in the run's staging directory (gate.run.adopt)", produced.video)
    pol = inputs.policy
    clip, measured, payload, video = produced.clip, produced.measured, produced.payload, produced.video
    gen_info, weights_used, disclosure, created_at = (
        produced.generator,
        produced.weights,
        produced.disclosure,
        produced.created_at,
    )
    # decide
    results = policy_mod.evaluate(pol, measured.measurements)
    if inputs.baseline is not None:
        results += policy_mod.regression_checks(pol, measured.measurements, inputs.baseline)
    decision = policy_mod.decide(results, measured.refused_weights)
    timer.lap("decide")

    # sign last, verify from disk (a provenance failure quarantines: the claim could not be proven)
    say("signing the C2PA manifest and verifying from disk")
    gate_results = {
        "run_id": inputs.run_id,
        "decision": "pending" if decision.released and pol.review is not None else decision.label,
        "reasons": list(decision.reasons),
        "policy": {"name": pol.name, "version": pol.version, "sha256": pol.sha256},
        "checks": [asdict(r) for r in results],
        "metrics": {k: m.value for k, m in measured.measurements.items()},
        "model": gen_info.model_dump(mode="json", include={"backend", "model_name", "seed", "model_sha256"}),
        "weights": {w["name"]: w["sha256"] for w in weights_used},
    }
    if pol.review is not None:  # the signed claim says people decide: released only after their approval
        gate_results["review"] = {
            "required_approvals": pol.review.required_approvals,
            "four_eyes": pol.review.four_eyes,
        }
    verify_report: VerifyReport | None = None
    provenance_reason = None
    try:
        _, verify_report = sign_and_verify(
            video,
            signer=inputs.signer,
            portrait=inputs.portrait,
            audio_path=inputs.audio_path,
            payload=payload,
            gate_results=gate_results,
            trust_anchors_pem=inputs.request.trust_anchors_pem,
            title=f"hallo3-gate {inputs.run_id}",
            generator={"name": f"{gen_info.backend}: {gen_info.model_name}", "version": _version()},
            disclosure=disclosure,
            duration_ms=math.ceil(len(clip.frames) / clip.fps * 1000),
        )
    except ProvenanceError as exc:  # signing failed, or the signed file did not verify from disk
        provenance_reason = f"provenance: {exc.one_line()}"
        verify_report = getattr(exc, "report", None)  # what verification found, when it got that far
    timer.lap("sign_verify")
    _kill_point(inputs, "after_sign")

    # the compliance matrix of the final file: its manifest and watermark as verified from disk, its AIGC tag, its
    # frames' visible label (signing changes no frame: the frames measured are the final ones), the consent check
    label_check = label.check(clip.frames, clip.fps, inputs.label_spec) if inputs.label_spec is not None else None
    rows = _compliance(inputs, verify_report, label_check, measured) if verify_report is not None else []
    compliance_reasons = [
        f"compliance {row.id} not met: {row.reason}" for row in compliance.unmet(rows, pol.compliance_required)
    ]
    if verify_report is None and pol.compliance_required:
        compliance_reasons.append("compliance: not checked: the signed file could not be verified")
    timer.lap("compliance")
    return Candidate(
        created_at=created_at,
        generator=gen_info,
        weights=weights_used,
        payload=payload,
        video=video,
        clip=clip,
        measured=measured,
        results=results,
        decision=decision,
        verify_report=verify_report,
        provenance_reason=provenance_reason,
        review=pol.review,
        disclosure=disclosure,
        label_check=label_check,
        compliance=rows,
        compliance_reasons=compliance_reasons,
    )


def _disclosure(
    inputs: RunInputs, created_at: dt.datetime, gen: S.GeneratorInfo, weights_used: list[dict[str, Any]]
) -> Disclosure | None:
    """The latent disclosure of this output (SB 942 §22757.3(b), EU 50(2)): the provider, the system (generator and
    hallo3-gate) with its version (model hash, hallo3-gate version), the creation time and the run id as the unique
    id; with the visible label the policy burns in. None without a provider (then no disclosure, no AIGC tag)."""
    if inputs.provider is None:
        return None
    return Disclosure.new(
        provider=inputs.provider,
        generator=f"{gen.backend} ({gen.model_name})",
        tool_version=_version(),
        model_sha256=gen.model_sha256,
        weights={w["name"]: w["sha256"] for w in weights_used},
        id=inputs.run_id,
        created=created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        visible_label=inputs.label_spec.to_dict() if inputs.label_spec is not None else None,
    )


def _consent_db(inputs: RunInputs) -> Any:
    """The database holding the consent registry (the ledger's), or None when it does not exist yet."""
    found = existing_ledger(inputs.ledger_path)
    return found.db if found is not None else None


def _compliance(
    inputs: RunInputs,
    report: VerifyReport,
    label_check: label.LabelCheck | None,
    measured: MeasureOutcome,
) -> list[S.ComplianceRow]:
    """The matrix of the final file, as verified from disk (``report``), with the run's own label check and consent
    outcome (``gate.compliance.evidence_for_run``: the run's ledger row comes after its record, so the manifest
    recovery row says "not checked"; ``hallo3-gate verify`` shows it met once the row exists)."""
    consent = measured.measurements.get("consent")
    evidence = compliance.evidence_for_run(
        report,
        run_id=inputs.run_id,
        label=label_check.to_dict() if label_check is not None else None,
        label_required=inputs.label_spec is not None,
        consent=dict(consent.details) if consent is not None and "status" in consent.details else None,
        config=inputs.config,
        ledger_locator=inputs.ledger_path,
    )
    return compliance.matrix(evidence)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hallo3-gate")
    except metadata.PackageNotFoundError:
        return "unknown"


def baseline_means(run_dir: Path) -> dict[str, float]:
    """Mean of every measured metric over the records found under a baseline run directory."""
    values: dict[str, list[float]] = {}
    records = sorted(run_dir.rglob(RECORD_NAME))
    if not records:
        raise UsageError(str(run_dir), "baseline directory must contain gate records (record.json)", "none found")
    for p in records:
        try:
            rec = S.GateRecord.from_json(p.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(str(p), "baseline record must be a readable gate record", type(exc).__name__) from None
        for m in rec.measurements:
            if m.value is not None:
                values.setdefault(m.name, []).append(m.value)
    return {k: float(np.mean(v)) for k, v in values.items()}


# --- the record -----------------------------------------------------------------------------------------------------


def _file_ref(path: Path, media_type: str | None = None) -> S.FileRef:
    try:
        mt = media_type or ingredient_mime(path)
    except Hallo3Error:
        mt = "application/octet-stream"
    return S.FileRef.from_path(path, mt)


def _series(values: list[float | None] | None, label: str, fps: float) -> S.Series | None:
    if not values:
        return None
    return S.Series(label=label, values=values, fps=fps)


def _watermark_record(candidate: Candidate) -> S.WatermarkRecord:
    payload = candidate.payload
    wm = candidate.verify_report.watermark if candidate.verify_report is not None else None
    wm_detail = wm.detail if wm is not None else {}
    per_frame = wm_detail.get("bit_accuracy") if isinstance(wm_detail, dict) else None
    return S.WatermarkRecord(
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
        frames_embedded=int(candidate.clip.frames.shape[0]),
        frames_decoded=wm.frames_decoded if wm is not None else None,
        reason=candidate.provenance_reason,
    )


def _provenance_record(candidate: Candidate) -> S.ProvenanceRecord:
    report = candidate.verify_report
    if report is None:
        return S.ProvenanceRecord(manifest_state="NotChecked", verified=False, reason=candidate.provenance_reason)
    man = report.manifest
    leaf = man.signer_chain[0] if man.signer_chain else {}
    generators = [f"{g.get('name')} {g.get('version', '')}".strip() for g in man.claim_generator]
    return S.ProvenanceRecord(
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
        watermark_agrees=report.agreement,
        verified=report.verified,
    )


def build_record(inputs: RunInputs, candidate: Candidate, final: Path, timings: dict[str, float]) -> S.GateRecord:
    """The audit record of a run (without its ledger entry: that is added once the row exists)."""
    clip, measured, pol = candidate.clip, candidate.measured, inputs.policy
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
        for r in candidate.results
    ]
    inputs_rec = S.Inputs(
        portrait=_file_ref(inputs.portrait),
        audio=_file_ref(inputs.audio_path),
        video=_file_ref(inputs.video_in, "video/x-unknown") if inputs.video_in is not None else None,
        prompt=inputs.request.prompt,
    )
    output = S.Output(
        **{**_file_ref(candidate.video, "video/mp4").model_dump(), "path": str(final / VIDEO_NAME)},
        staging_path=str(candidate.video),
        width=int(clip.frames.shape[2]),
        height=int(clip.frames.shape[1]),
        fps=float(clip.fps),
        frames=int(clip.frames.shape[0]),
        duration_s=float(clip.frames.shape[0] / clip.fps),
    )
    gen = candidate.generator
    if candidate.weights:
        gen = gen.model_copy(update={"weight_hashes": {w["name"]: w["sha256"] for w in candidate.weights}})
    return S.GateRecord(
        run_id=inputs.run_id,
        created_at=candidate.created_at,
        mode=inputs.mode,
        decision=candidate.label,
        exit_code=int(candidate.exit_code),
        reasons=candidate.reasons,
        inputs=inputs_rec,
        output=output,
        generator=gen,
        weights=[S.WeightRef(**w) for w in candidate.weights],
        measurements=measurements,
        checks=checks,
        watermark=_watermark_record(candidate),
        provenance=_provenance_record(candidate),
        policy=S.PolicyRecord(name=pol.name, path=pol.path, sha256=pol.sha256, content=tomllib.loads(pol.source)),
        timings=dict(timings),
        environment=collect_environment(),
        keyframes=make_keyframes(clip.frames, clip.fps, count=6),
        review=_submission(inputs, candidate),
        compliance=candidate.compliance or _unchecked_matrix(candidate),
        disclosure=S.DisclosureRecord.from_disclosure(candidate.disclosure) if candidate.disclosure else None,
        consent=_consent_ref(measured),
        label=S.LabelRecord.from_check(candidate.label_check) if candidate.label_check is not None else None,
    )


def _consent_ref(measured: MeasureOutcome) -> S.ConsentRef | None:
    m = measured.measurements.get("consent")
    return S.ConsentRef.from_outcome(m.details) if m is not None and "status" in m.details else None


def _unchecked_matrix(candidate: Candidate) -> list[S.ComplianceRow]:
    """The matrix when the signed file could not be verified (the run is quarantined for it): every row not checked,
    with the reason."""
    why = candidate.provenance_reason or "the signed file could not be verified"
    return [
        S.ComplianceRow(id=r.id, requirement=r.requirement, source=r.source, status="not_checked", reason=why)
        for r in compliance.REQUIREMENTS
    ]


def _submission(inputs: RunInputs, candidate: Candidate) -> S.ReviewRecord | None:
    """A pending run's review as submitted: the policy's rules, the submitter and the submission event (its ledger
    seq and hash are filled in from the row once it exists: ``gate.staging.complete_record``)."""
    rules = inputs.policy.review
    if rules is None or candidate.label != "pending":
        return None
    submission = S.ReviewEvent(
        kind="run", actor=inputs.submitted_by, role="submitter", at=candidate.created_at, comment=None
    )
    return S.ReviewRecord(
        required_approvals=rules.required_approvals,
        four_eyes=rules.four_eyes,
        reason_codes=list(rules.reason_codes),
        submitted_by=inputs.submitted_by,
        state="pending",
        events=[submission],
    )
