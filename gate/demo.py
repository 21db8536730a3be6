"""``hallo3-gate demo``: the whole gate, offline, on real inputs made on this machine.

Inputs: a real portrait photo (scikit-image's ``astronaut``), framed three ways, and real synthesised speech (Debian's
``espeak-ng``), one sentence per framing: three cases. A suite (``gate.suite``, written to
``inputs/demo-suite.toml``) runs every generator backend that works without downloaded weights — ``puppet``
(positive control: the portrait's mouth opened by the speech envelope), ``still`` (negative control: the portrait
repeated) and ``hallo3-tiny`` (the real Hallo3 pipeline code with tiny random weights) — over the three cases through
``hallo3-gate evaluate`` under the shipped *offline* policy (AV-sync instead of Sync-C/Sync-D, whose SyncNet weights
cannot be downloaded here; the default policy would fail closed with exit 3), then renders the executive report
(``evaluation/report.html``/``.pdf``: scorecard with intervals, verdict, distributions, worst cases). Then it verifies
a released output from disk, again after stripping its manifest (watermark → ledger), and checks the ledger chain.

The human step: one more ``puppet`` run goes through the *offline-review* policy (two approvals, four eyes), so it
passes every automated check and waits in ``runs/review/pending/`` (exit 6). Two demo approvers are created in the
demo's database (passwords in ``demo-users.txt``, mode 0600), the review service is started on a free port of
127.0.0.1 (``hallo3-gate serve``, as a separate process: ``gate`` never imports the web app), and each approver
approves the run through the JSON API with their own token: after the first it is still pending, after the second
it is released.

Compliance: the shipped policies release a video of a person only against a consent record, and name the provider
in every latent disclosure. The demo registers consent for its portrait in its own database (the evidence is a demo
statement it writes, saying so), and uses the configured provider (``gate.config``) — or, when none is configured,
names itself "hallo3-gate demo (no provider configured)" and says so: a real deployment configures its own name.

Everything lands under one output directory; nothing outside it is touched except the development signing keys
(created once in the user's keys directory if absent).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reports.errors import InputError, UsageError

OFFLINE_POLICY = Path(__file__).resolve().parent / "policies" / "offline.toml"
REVIEW_POLICY = Path(__file__).resolve().parent / "policies" / "offline-review.toml"
SUBMITTER = "demo-submitter"
APPROVERS = ("demo-approver-1", "demo-approver-2")
SERVER_START_S = 60.0
SPEECH = "A machine made this video. It carries a watermark and a signed manifest."  # about 5 s
DEMO_PROVIDER = "hallo3-gate demo (no provider configured)"


@dataclass
class DemoResult:
    out_dir: Path
    inputs: dict[str, Path]
    runs: list[dict[str, object]] = field(default_factory=list)
    verify: dict[str, object] = field(default_factory=dict)
    ledger: dict[str, object] = field(default_factory=dict)
    evaluation: dict[str, Path] = field(default_factory=dict)
    review: dict[str, object] = field(default_factory=dict)
    consent_id: str | None = None
    provider: str | None = None


def make_portrait(path: Path) -> Path:
    from PIL import Image
    from skimage import data

    Image.fromarray(np.asarray(data.astronaut(), dtype=np.uint8)).save(path)
    return path


def make_speech(path: Path, text: str = SPEECH) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UsageError("espeak-ng", "must be installed to synthesise the demo speech (`make install` does it)")
    proc = subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(path), text], capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file() or path.stat().st_size < 1000:
        raise InputError(str(path), "espeak-ng must write a WAV file", proc.stderr.strip() or proc.returncode)
    return path


# The demo suite's cases: the astronaut framed three ways (the same person, so one consent record covers them), each
# with its own sentence. Three cases per model let the report show intervals (and say when they cannot separate).
CASES = (
    ("wide", None, SPEECH),
    ("close", (110, 0, 402, 292), "Every frame is measured and checked before anyone may publish it."),
    ("mirrored", "mirror", "Consent, a visible label and a ledger row come with every output."),
)
DESCRIPTIONS = {
    "puppet": "positive control: the portrait's mouth opened by the speech envelope",
    "still": "negative control: the portrait repeated, no motion",
    "hallo3-tiny": "the real Hallo3 pipeline code with tiny random weights (no face survives)",
}


def build_inputs(directory: Path) -> dict[str, Path]:
    """The demo's portraits and speech: ``<case>.png`` and ``<case>.wav`` for every case of ``CASES``."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    full = Image.open(make_portrait(directory / "astronaut.png")).convert("RGB")
    inputs: dict[str, Path] = {}
    for case, framing, text in CASES:
        if framing is None:
            img = full
        elif framing == "mirror":
            img = full.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            img = full.crop(framing).resize(full.size, Image.Resampling.LANCZOS)
        img.save(directory / f"{case}.png")
        inputs[f"{case}.png"] = directory / f"{case}.png"
        inputs[f"{case}.wav"] = make_speech(directory / f"{case}.wav", text)
    inputs["portrait"], inputs["audio"] = inputs["wide.png"], inputs["wide.wav"]
    return inputs


def write_suite(path: Path, inputs: dict[str, Path], backends: tuple[str, ...], policy: Path) -> Path:
    """The demo's evaluation suite (``gate.suite``): every backend × every case, under ``policy``."""
    lines = ['name = "demo"', f"policy = {json.dumps(str(policy))}", ""]
    for backend in backends:
        lines += [f'[models."{backend}"]', f'backend = "{backend}"']
        if backend in DESCRIPTIONS:
            lines.append(f"description = {json.dumps(DESCRIPTIONS[backend])}")
        lines.append("")
    for seed, (case, _, _) in enumerate(CASES):
        lines += ["[[cases]]", f'id = "{case}"', f"portrait = {json.dumps(str(inputs[case + '.png']))}"]
        lines += [f"audio = {json.dumps(str(inputs[case + '.wav']))}", f"seed = {seed}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_demo(
    out_dir: Path,
    *,
    backends: tuple[str, ...] = ("puppet", "still", "hallo3-tiny"),
    policy: Path | None = None,
    say: Callable[[str], None],
) -> DemoResult:
    from gate import media, suite
    from gate.evaluate import evaluate
    from gate.ledger import Ledger
    from gate.run import RunRequest, run
    from gate.verify_view import ledger_lookup
    from provenance.keys import SignerConfig, dev_trust_anchor, init_dev_keys
    from provenance.verify import verify
    from reports.evaluation import render_evaluation_dir

    out_dir = Path(out_dir)
    inputs = build_inputs(out_dir / "inputs")
    say(f"inputs: {len(CASES)} cases in {out_dir / 'inputs'} (the scikit-image astronaut framed three ways, espeak-ng)")
    config = SignerConfig.from_env()
    if config.development and not config.chain_path.exists():
        init_dev_keys(config.chain_path.parent)
        say(f"created DEVELOPMENT signing keys in {config.chain_path.parent}")
    anchors = dev_trust_anchor(config)
    evaluation = out_dir / "evaluation"
    evaluation.mkdir(parents=True, exist_ok=True)
    ledger_path = evaluation / "gate.sqlite"  # the evaluation's database: ledger, consent registry, reviewers
    result = DemoResult(out_dir, inputs)
    result.provider = _demo_provider(say)
    result.consent_id = _demo_consent(ledger_path, inputs, say)

    # the suite: every backend x every case through the whole gate, then the executive report
    suite_file = write_suite(out_dir / "inputs" / "demo-suite.toml", inputs, backends, policy or OFFLINE_POLICY)
    say(f"evaluate {suite_file}: {len(backends)} models x {len(CASES)} cases")
    outcome = evaluate(suite.load(suite_file), evaluation, progress=lambda e: _say_progress(e, say))
    result.evaluation = {"out": evaluation, **render_evaluation_dir(evaluation)}
    for row in outcome.rows:
        result.runs.append(
            {
                "backend": row["model"],
                "case": row["case"],
                "decision": row["decision"],
                "exit_code": row["exit_code"],
                "reasons": json.loads(row["reasons"] or "[]"),
                "video": row["video_path"],
                "report": row["report_path"],
                "compliance": _compliance_counts(row["record_path"]),
            }
        )

    # verify from disk, then after stripping the manifest (a remux): the watermark still leads to the ledger record
    released = [r for r in result.runs if r["decision"] == "released"] or result.runs
    first = Path(str(released[0]["video"]))

    def lookup(payload_hex: str) -> dict[str, object] | None:  # the same lookup `hallo3-gate verify` uses
        return ledger_lookup(payload_hex, ledger_path)

    signed = verify(first, media.iter_frames(first), trust_anchors_pem=anchors, lookup=lookup)
    stripped = media.remux(first, out_dir / "stripped-copy.mp4")
    bare = verify(stripped, media.iter_frames(stripped), trust_anchors_pem=anchors, lookup=lookup)
    result.verify = {
        "file": str(first),
        "manifest": signed.manifest.state,
        "signer_trusted": signed.manifest.signer_trusted,
        "watermark": signed.watermark.payload_hex,
        "record": signed.record,
        "stripped_file": str(stripped),
        "stripped_manifest": bare.manifest.state,
        "stripped_watermark": bare.watermark.payload_hex,
        "stripped_record": bare.record,
    }

    say("human review: a puppet run under the offline-review policy (two approvals, four eyes)")
    review = run(
        RunRequest(
            mode="generate",
            out_dir=out_dir / "runs" / "review",
            portrait=inputs["portrait"],
            audio=inputs["audio"],
            backend="puppet",
            seed=1,
            policy_path=REVIEW_POLICY,
            ledger_path=ledger_path,
            signer=config,
            trust_anchors_pem=anchors,
            prompt="An astronaut talking in front of the American flag",
            submitted_by=SUBMITTER,
        ),
        progress=lambda msg: say(f"  {msg}"),
    )
    result.review = human_review(out_dir, review.record.run_id, review.record.decision, ledger_path, say)

    rep = Ledger(ledger_path).verify()  # every run, submission, approval, release, user and consent change is a row
    result.ledger = {"path": str(ledger_path), "rows": rep.rows, "ok": rep.ok, "head": rep.head}
    return result


def _say_progress(event: object, say: Callable[[str], None]) -> None:
    kind = getattr(event, "kind", "")
    if kind == "case" and getattr(event, "result", None) is not None:
        row = event.result.row  # type: ignore[attr-defined]
        say(f"  [{event.done}/{event.total}] {row['model']} x {row['case']}: {row['decision']}")  # type: ignore[attr-defined]
    elif kind in ("skip", "note") and getattr(event, "message", None):
        say(f"  {event.message}")  # type: ignore[attr-defined]


def _compliance_counts(record_path: str) -> str:
    from reports.schema import GateRecord

    try:
        rec = GateRecord.from_json(Path(record_path).read_bytes())
    except (OSError, ValueError):
        return "-"
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in rec.compliance_counts().items() if n)


def _demo_provider(say: Callable[[str], None]) -> str:
    """The provider named in the disclosures: the configured one (``gate.config``); without one, the demo names
    itself in ``$HALLO3_GATE_PROVIDER`` for its own process (and says so) — a real deployment configures its name."""
    from gate import config

    found = config.load()
    if found.provider is not None:
        return found.provider
    say(
        f"no provider configured: the demo names itself {DEMO_PROVIDER!r} in the disclosures "
        f"(set ${config.ENV_PROVIDER} or [provider] name in {config.default_path()})"
    )
    os.environ[config.ENV_PROVIDER] = DEMO_PROVIDER
    return DEMO_PROVIDER


def _demo_consent(ledger_path: Path, inputs: dict[str, Path], say: Callable[[str], None]) -> str:
    """A consent record for the demo portrait's person in the demo's database (created with it); the evidence file is
    a statement the demo writes, saying that it is one."""
    from gate import consent
    from gate.database import Database

    evidence = inputs["portrait"].parent / "consent-evidence-DEMO.txt"
    evidence.write_text(
        "DEMO consent evidence written by `hallo3-gate demo`: the scikit-image astronaut portrait (a public NASA "
        "photo) stands in for a person who consented. A real record names a signed consent form.\n",
        encoding="utf-8",
    )
    record = consent.add(
        Database.open(str(ledger_path), create=True),
        name="Astronaut portrait (scikit-image, demo)",
        portrait=inputs["portrait"],
        evidence=evidence,
        scope="hallo3-gate demo videos",
        expires=None,
        actor="hallo3-gate demo",
    )
    say(f"consent record {record.id} registered for the demo portrait (evidence: {evidence.name})")
    return record.id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_users(db_locator: str, users_file: Path) -> dict[str, str]:
    """Two approvers (created once per demo database; their passwords go to ``users_file``, mode 0600) and a fresh
    API token for each."""
    from gate import users
    from gate.database import Database

    db = Database.open(db_locator, create=True)
    existing = {u.name for u in users.list_users(db)}
    lines = []
    for name in APPROVERS:
        if name not in existing:
            password = secrets.token_urlsafe(12)
            users.add_user(db, name, "approver", password, actor="hallo3-gate demo")
            lines.append(f"{name} {password}\n")
    if lines:
        fd = os.open(users_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.writelines(lines)
    return {name: users.new_token(db, name, actor="hallo3-gate demo") for name in APPROVERS}


def _api(url: str, token: str | None = None, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def human_review(
    out_dir: Path, run_id: str, decision: str, ledger_path: Path, say: Callable[[str], None]
) -> dict[str, object]:
    """Approve the pending demo run through the review service's JSON API, as two different approvers."""
    runs = out_dir / "runs" / "review"
    serve_cmd = f"hallo3-gate serve --runs {runs} --db {ledger_path}"
    info: dict[str, object] = {"run_id": run_id, "submitted": decision, "serve": serve_cmd, "states": []}
    if decision != "pending":
        say(f"  the review run was {decision}, not pending: no human step")
        return info
    tokens = _demo_users(str(ledger_path), out_dir / "demo-users.txt")
    info["users_file"] = str(out_dir / "demo-users.txt")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "review_app.cli", "serve", "--runs", str(runs), "--db", str(ledger_path)]
    log = open(out_dir / "serve.log", "wb")  # noqa: SIM115 - closed below, after the server stops
    server = subprocess.Popen([*cmd, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                if _api(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise UsageError("hallo3-gate serve", "must start for the demo's review step", f"see {log.name}")
            time.sleep(0.3)
        say(f"  review service at {base}/ ({serve_cmd})")
        for name, token in tokens.items():
            body = {"decision": "approve", "reason": "meets-policy", "comment": f"demo approval by {name}"}
            status, answer = _api(f"{base}/api/v1/runs/{run_id}/decisions", token, body)
            state = answer.get("state") if status == 200 else f"HTTP {status}: {answer.get('detail', answer)}"
            say(f"  POST /api/v1/runs/{run_id}/decisions as {name} (approver): {state}")
            info["states"].append({"approver": name, "status": status, "state": state})  # type: ignore[union-attr]
        status, answer = _api(f"{base}/api/v1/runs/{run_id}", tokens[APPROVERS[0]])
        info["final"] = answer.get("state") if status == 200 else f"HTTP {status}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    return info
