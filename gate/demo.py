"""``hallo3-gate demo``: the whole gate, offline, on real inputs made on this machine.

Inputs: a real portrait photo (scikit-image's ``astronaut``) and real synthesised speech (Debian's ``espeak-ng``).
Runs every generator backend that works without downloaded weights — ``puppet`` (positive control: the portrait's
mouth opened by the speech envelope), ``still`` (negative control: the portrait repeated) and ``hallo3-tiny`` (the
real Hallo3 pipeline code with tiny random weights) — through the shipped *offline* policy (AV-sync instead of
Sync-C/Sync-D, whose SyncNet weights cannot be downloaded here; the default policy would fail closed with exit 3).
Then it verifies the first output from disk, again after stripping its manifest (watermark → ledger), checks the
ledger chain, and writes the model-comparison report.

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
    comparison: dict[str, Path] = field(default_factory=dict)
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


def build_inputs(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "portrait": make_portrait(directory / "astronaut.png"),
        "audio": make_speech(directory / "speech.wav"),
    }


def run_demo(
    out_dir: Path,
    *,
    backends: tuple[str, ...] = ("puppet", "still", "hallo3-tiny"),
    policy: Path | None = None,
    say: Callable[[str], None],
) -> DemoResult:
    from gate import media
    from gate.ledger import Ledger
    from gate.run import RunRequest, run
    from gate.verify_view import ledger_lookup
    from provenance.keys import SignerConfig, dev_trust_anchor, init_dev_keys
    from provenance.verify import verify
    from reports.compare import build_comparison, load_runs, write_comparison

    out_dir = Path(out_dir)
    inputs = build_inputs(out_dir / "inputs")
    say(f"inputs: {inputs['portrait']} (scikit-image astronaut), {inputs['audio']} (espeak-ng)")
    config = SignerConfig.from_env()
    if config.development and not config.chain_path.exists():
        init_dev_keys(config.chain_path.parent)
        say(f"created DEVELOPMENT signing keys in {config.chain_path.parent}")
    anchors = dev_trust_anchor(config)
    ledger_path = out_dir / "ledger.sqlite"
    result = DemoResult(out_dir, inputs)
    gate_config = _demo_config(say)
    result.provider = gate_config.provider
    result.consent_id = _demo_consent(ledger_path, inputs, say)

    for backend in backends:
        say(f"gate run: generate --backend {backend}")
        outcome = run(
            RunRequest(
                mode="generate",
                out_dir=out_dir / "runs" / backend,
                portrait=inputs["portrait"],
                audio=inputs["audio"],
                backend=backend,
                seed=0,
                policy_path=policy or OFFLINE_POLICY,
                ledger_path=ledger_path,
                signer=config,
                trust_anchors_pem=anchors,
                prompt="An astronaut talking in front of the American flag",
                config=gate_config,
            ),
            progress=lambda msg: say(f"  {msg}"),
        )
        rec = outcome.record
        result.runs.append(
            {
                "backend": backend,
                "decision": rec.decision,
                "exit_code": rec.exit_code,
                "reasons": rec.reasons,
                "video": rec.output.path,
                "report": str(outcome.directory / "report.html"),
                "payload": rec.watermark.payload,
                "compliance": ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in rec.compliance_counts().items() if n),
            }
        )

    # verify from disk, then after stripping the manifest (a remux): the watermark still leads to the ledger record
    first = Path(str(result.runs[0]["video"]))

    def lookup(payload_hex: str) -> dict[str, object] | None:  # the same lookup `hallo3-gate verify` uses
        return ledger_lookup(payload_hex, ledger_path)

    signed = verify(first, media.iter_frames(first), trust_anchors_pem=anchors, lookup=lookup)
    stripped = media.remux(first, out_dir / "stripped-copy.mp4")
    bare = verify(stripped, media.iter_frames(stripped), trust_anchors_pem=anchors, lookup=lookup)
    result.verify = {
        "file": str(first),
        "manifest": signed.manifest.state,
        "watermark": signed.watermark.payload_hex,
        "record": signed.record,
        "stripped_file": str(stripped),
        "stripped_manifest": bare.manifest.state,
        "stripped_watermark": bare.watermark.payload_hex,
        "stripped_record": bare.record,
    }
    df = load_runs([out_dir / "runs" / b for b in backends])
    result.comparison = write_comparison(build_comparison(df), out_dir / "comparison")

    say("human review: a puppet run under the offline-review policy (two approvals, four eyes)")
    outcome = run(
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
            config=gate_config,
        ),
        progress=lambda msg: say(f"  {msg}"),
    )
    result.review = human_review(out_dir, outcome.record.run_id, outcome.record.decision, ledger_path, say)

    rep = Ledger(ledger_path).verify()  # every run, submission, approval, release and user change is a row
    result.ledger = {"path": str(ledger_path), "rows": rep.rows, "ok": rep.ok, "head": rep.head}
    return result


def _demo_config(say: Callable[[str], None]) -> object:
    """The configuration in force; without a configured provider, the demo's own name for itself (said aloud)."""
    import dataclasses

    from gate import config

    found = config.load()
    if found.provider is not None:
        return found
    say(
        f"no provider configured: the demo names itself {DEMO_PROVIDER!r} in the disclosures "
        f"(set ${config.ENV_PROVIDER} or [provider] name in {config.default_path()})"
    )
    return dataclasses.replace(found, provider=DEMO_PROVIDER, provider_source="hallo3-gate demo")


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
