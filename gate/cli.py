"""The ``hallo3-gate`` command line.

Commands are thin: they parse arguments, call the package that owns the work, and print (``--json`` for machines).
``main`` turns every exception into a message on stderr and an exit code through ``reports.errors.exit_status`` (the
one mapping; codes in ``reports.errors.ExitCode``): no traceback on stderr unless ``--debug`` asks for it. Every
string that came from a user (paths, reasons, names) is printed as plain text: never read as rich markup, emoji
codes or terminal control sequences. Each section below belongs to one part of the system.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.console import Console
from rich.text import Text

from gate.cli_consent import consent_app
from gate.cli_retention import retention_app
from gate.config import load as load_config
from reports.errors import PROG, ExitCode, InputError, UsageError, exit_status, printable

app = typer.Typer(
    name="hallo3-gate",
    help="Measure, watermark, sign, verify, record and report every Hallo3 video - or quarantine it with the reason.",
    epilog="Exit codes of every command, besides its own (see its --help): 2 usage error; 74 an output could not be "
    "written (one line names the path and the OS error); 70 unexpected error (a bug: one line names the log file with "
    "the traceback, or run with --debug); 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Signing credentials (development PKI, production PEM/KMS).", no_args_is_help=True)
weights_app = typer.Typer(help="The weight-file registry: list, fetch, verify.", no_args_is_help=True)
ledger_app = typer.Typer(help="The tamper-evident ledger of every gate run.", no_args_is_help=True)
users_app = typer.Typer(help="People who review runs: roles, passwords, API tokens.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(weights_app, name="weights")
app.add_typer(ledger_app, name="ledger")
app.add_typer(users_app, name="users")
app.add_typer(consent_app, name="consent")
app.add_typer(retention_app, name="retention")

LEDGER_HELP = (
    "The ledger: an SQLite file or a postgresql:// URL (default $HALLO3_GATE_DB, else $HALLO3_GATE_LEDGER, else "
    "~/.local/share/hallo3-gate/ledger.sqlite)."
)
DB_HELP = (
    "The database of the ledger and the users: an SQLite file or a postgresql:// URL (default $HALLO3_GATE_DB, else "
    "$HALLO3_GATE_LEDGER, else ~/.local/share/hallo3-gate/ledger.sqlite)."
)
USER_ENV = "HALLO3_GATE_USER"
SUBMITTED_BY_HELP = "Who submits the run for review (default $HALLO3_GATE_USER, else the OS user); recorded."
DEBUG_ENV = "HALLO3_GATE_DEBUG"
# emoji=False: ":smile:" in a file name stays ":smile:"; highlight=False: no colouring guessed from the text
# What the portrait and speech options accept: the C2PA ingredient formats (provenance.c2pa.INGREDIENT_FORMATS, kept
# in step by tests/gate/test_cli_usage.py; not imported here so `--help` does not load the C2PA SDK).
PORTRAIT_FORMATS = "JPEG, PNG, GIF, WebP, TIFF"
SPEECH_FORMATS = "WAV, MP3, FLAC, M4A, Ogg"
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class _Options:
    """Global options (set by the app callback, read by ``main`` after a command raised)."""

    debug = False


def text(*parts: str | tuple[str, str]) -> Text:
    """One console line from plain strings and (string, style) pairs: never markup; control characters, line breaks
    and bidi overrides shown as escapes (a value cannot colour, move or reorder the output, or fake another line)."""
    return Text.assemble(
        *(
            (printable(p[0], newlines=False), p[1]) if isinstance(p, tuple) else printable(p, newlines=False)
            for p in parts
        )
    )


def say(*parts: str | tuple[str, str], err: bool = False) -> None:
    """Print one line of plain text (see ``text``) on stdout, or stderr with ``err``."""
    (err_console if err else console).print(text(*parts))


@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False,
        "--debug",
        help=f"On an unexpected error (exit 70), print the traceback on stderr instead of writing it to a log file "
        f"(also {DEBUG_ENV}=1). Give it before the command.",
    ),
) -> None:
    _Options.debug = debug


# --- provenance commands: keys, verify, stamp -------------------------------------------------------------------
# Heavy modules (c2pa, the watermark's torch/onnx) are imported inside the commands so `--help` stays fast.


@keys_app.command("init")
def keys_init(
    directory: str | None = typer.Option(
        None, "--dir", help="Where to write them (default $HALLO3_GATE_KEYS_DIR or ~/.config/hallo3-gate/dev-keys)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing development keys."),
    json_out: bool = typer.Option(False, "--json", help="Print the file paths as JSON."),
) -> int:
    """Make a DEVELOPMENT signing PKI: root CA -> intermediate CA -> ES256 signer (private keys mode 0600).

    Manifests signed with it read Valid (untrusted) everywhere, and Trusted only where the development root is given
    as a trust anchor (`--trust <dir>/dev-root-ca.DEVELOPMENT.crt.pem`). Production signs with
    HALLO3_GATE_SIGN_CHAIN + HALLO3_GATE_SIGN_KEY (or a KMS callback in code).

    Exit codes: 0 written; 2 keys already exist (without --force) or --dir is not a directory; 74 a key file could
    not be written.
    """
    import json

    from provenance.keys import init_dev_keys

    paths = init_dev_keys(directory, force=force)
    if json_out:
        typer.echo(json.dumps(paths.to_dict(), indent=2))
    else:
        say(f"development keys written to {paths.directory} (DEVELOPMENT - not for production)")
        say(f"  signer chain : {paths.signer_chain}")
        say(f"  signer key   : {paths.signer_key} (mode 0600)")
        say(f"  trust anchor : {paths.root_cert}")
    return 0


@keys_app.command("show")
def keys_show(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """Load and check the configured signing credentials; print the certificates (never the key).

    Exit codes: 0 loaded; 5 no credentials, or they do not load or match; 2 only one of HALLO3_GATE_SIGN_CHAIN and
    HALLO3_GATE_SIGN_KEY is set.
    """
    import json

    from provenance.keys import SignerConfig, load_signer

    config = SignerConfig.from_env()
    signer = load_signer(config)
    info = {"source": config.describe(), **signer.to_dict()}
    if json_out:
        typer.echo(json.dumps(info, indent=2))
    else:
        console.print_json(data=info, ensure_ascii=True)
    return 0


@app.command("verify")
def verify_command(
    file: str = typer.Argument(..., help="The MP4 to verify."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the tree."),
    trust: str | None = typer.Option(
        None, "--trust", help="PEM trust anchors (default $HALLO3_GATE_TRUST_ANCHORS; else built-in list only)."
    ),
    require_trusted: bool = typer.Option(
        False, "--require-trusted", help="Treat a claim signer that is not on the trust list as a failure."
    ),
    ledger: str | None = typer.Option(None, "--ledger", help=LEDGER_HELP),
) -> int:
    """Verify a video from disk: its C2PA manifest, its invisible watermark, and that both name the same payload.

    The ledger record is found through the payload (the watermark's, which survives a stripped manifest).

    It also shows the file's compliance matrix (one row per obligation: met, not met, not applicable, not checked,
    with the evidence; --json: "compliance") and the latent disclosure fields of its manifest (--json:
    "disclosure": provider, system, version, created, id; null when there are none). The matrix informs; it does
    not change the exit code.

    Any video PyAV reads is verified: an MP4 carries the manifest; a copy in another container (AVI, MKV, WebM ...)
    cannot, so it is reported with its watermark and ledger record but is not verified.

    Exit codes:
    0 verified: manifest Trusted or Valid (with --require-trusted: its claim signer on the trust list), watermark =
    its soft-binding payload;
    5 not verified: no manifest (e.g. any non-MP4 container), manifest Invalid, watermark absent or disagreeing
    (report printed, reasons on stderr), or the ledger that holds its record fails its hash-chain check;
    4 the file is not a readable, complete video (not a video, truncated, missing), or --ledger is not a ledger;
    2 bad arguments (e.g. an unreadable --trust file).
    """
    import json

    from gate import media
    from gate.compliance import evidence_from_report, matrix
    from gate.config import load as load_config
    from gate.verify_view import disclosure_dict, ledger_lookup, verify_tree
    from provenance.keys import load_trust_anchors
    from provenance.verify import verify

    anchors = load_trust_anchors(trust)
    config = load_config()
    report = verify(
        file,
        media.iter_frames(file),
        trust_anchors_pem=anchors,
        require_trusted=require_trusted,
        lookup=lambda payload: ledger_lookup(payload, _ledger_path(ledger)),
    )
    rows = matrix(evidence_from_report(report, ledger_locator=_ledger_path(ledger), config=config))
    if json_out:
        out = {**report.to_dict(), "disclosure": disclosure_dict(report.manifest)}
        out["compliance"] = [row.model_dump(mode="json") for row in rows]
        typer.echo(json.dumps(out, indent=2))
    else:
        wide = console if console.is_terminal else Console(highlight=False, soft_wrap=True, emoji=False, width=160)
        wide.print(verify_tree(report, rows))
    if not report.verified:
        say(f"{PROG}: {file}: not verified: {'; '.join(report.reasons)}", err=True)
        return int(ExitCode.PROVENANCE)
    return 0


@app.command("stamp")
def stamp_command(
    in_video: str = typer.Argument(..., help="An existing talking-portrait video (with its audio track)."),
    out: str = typer.Argument(..., help="The watermarked, signed MP4 to write (appears complete or not at all)."),
    portrait: str = typer.Option(
        ..., "--portrait", help=f"The reference portrait ({PORTRAIT_FORMATS}), a manifest ingredient."
    ),
    audio: str = typer.Option(..., "--audio", help=f"The speech audio ({SPEECH_FORMATS}), a manifest ingredient."),
    crf: int = typer.Option(18, "--crf", help="H.264 CRF of the re-encode (0-51)."),
    trust: str | None = typer.Option(None, "--trust", help="PEM trust anchors for the verification after signing."),
    require_trusted: bool = typer.Option(
        False, "--require-trusted", help="Fail unless the signed output's claim signer is on the trust list."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Watermark every frame, re-encode (H.264 + AAC), sign a C2PA manifest last, then verify the file from disk.

    Signs with HALLO3_GATE_SIGN_CHAIN + HALLO3_GATE_SIGN_KEY, else the development keys (`hallo3-gate keys init`).
    Nothing is left at OUT on failure.

    Exit codes:
    0 stamped and verified;
    4 bad input: not a video, truncated, no audio track, unreadable ingredient;
    5 signing or verification failed: bad credentials, or the output did not verify;
    2 bad arguments;
    74 OUT could not be written (not a regular file, permission denied, disk full).
    """
    import json
    from pathlib import Path

    from gate.stamp import stamp
    from provenance.keys import SignerConfig, dev_trust_anchor, load_signer, load_trust_anchors

    config = SignerConfig.from_env()
    signer = load_signer(config)
    anchors = load_trust_anchors(trust) or dev_trust_anchor(config)
    if signer.development:
        say(f"{PROG}: warning: signing with DEVELOPMENT keys (not trusted outside this machine)", err=True)
    result = stamp(
        in_video,
        out,
        portrait=Path(portrait),
        audio=Path(audio),
        signer=signer,
        trust_anchors_pem=anchors,
        crf=crf,
        require_trusted=require_trusted,
        provider=load_config().provider,
    )
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        m = result.verify.manifest
        say(
            f"{result.path}: watermarked ({result.frames} frames, payload {result.payload_hex}), "
            f"signed ({result.sign.alg}), verified from disk: manifest {m.state}"
        )
    return 0


# --- metrics commands: measure ---------------------------------------------------------------------------------


def _measure_weights_dir(weights_dir: str | None) -> None:
    """``--weights-dir`` is searched first: it is put in front of ``HALLO3_GATE_WEIGHTS`` for this process."""
    import os
    from pathlib import Path

    from reports.errors import UsageError

    if weights_dir is None:
        return
    if not Path(weights_dir).is_dir():
        raise UsageError("--weights-dir", "must be an existing directory", weights_dir)
    rest = os.environ.get("HALLO3_GATE_WEIGHTS")
    os.environ["HALLO3_GATE_WEIGHTS"] = os.pathsep.join([weights_dir, *([rest] if rest else [])])


def _measure_row(m) -> dict:
    return {
        "value": m.value,
        "reason": m.reason,
        "unit": m.unit,
        "protocol": m.protocol,
        "higher_is_better": m.higher_is_better,
    }


@app.command("measure")
def measure_command(
    video: str = typer.Argument(..., help="The talking-portrait video to measure."),
    reference: str | None = typer.Option(
        None, "--reference", help=f"The reference portrait ({PORTRAIT_FORMATS}) for identity."
    ),
    audio: str | None = typer.Option(None, "--audio", help="Speech to use instead of the video's own audio track."),
    weights_dir: str | None = typer.Option(None, "--weights-dir", help="Directory searched first for weight files."),
    fvd_reference: str | None = typer.Option(None, "--fvd-reference", help="FVD reference statistics (.npz)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object keyed by metric name."),
    details: bool = typer.Option(False, "--details", help="With --json: add each metric's details (per-frame series)."),
) -> int:
    """Measure a video with every metric that can run here; say why for each one that cannot.

    Example: hallo3-gate measure clip.mp4 --reference face.jpg --audio speech.wav --json

    JSON: {"identity_mean": {"value": 0.71, "reason": null, "unit": "cosine", "protocol": "...",
    "higher_is_better": true}, "sync_c": {"value": null, "reason": "not measured: syncnet_v2.model missing - run
    `hallo3-gate weights fetch syncnet`", ...}, ...}. A value is a number or null, and null always comes with the
    reason. FVD appears only with --fvd-reference.

    Exit codes: 0 every metric measured; 3 at least one metric could not be measured (the others are still printed);
    2 usage error; 4 unreadable or invalid input file.
    """
    import json

    from gate.measure import ALL, FVD, measure_candidate
    from gate.media import read_audio, read_image, read_video

    _measure_weights_dir(weights_dir)
    media = read_video(video, require_audio=False)
    sound, rate = (media.audio, media.sample_rate) if audio is None else read_audio(audio)
    portrait = read_image(reference) if reference is not None else None
    needed = set(ALL) if fvd_reference else set(ALL) - set(FVD)
    fvd_path = None
    if fvd_reference is not None:
        from pathlib import Path

        fvd_path = Path(fvd_reference)
    outcome = measure_candidate(media.frames, media.fps, sound, rate, portrait, needed=needed, fvd_reference=fvd_path)
    rows = outcome.measurements
    if json_out:
        obj = {k: {**_measure_row(m), **({"details": m.details} if details else {})} for k, m in rows.items()}
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        from rich.table import Table

        table = Table(title=text(f"{PROG} measure {video}"), show_lines=False)
        for col in ("metric", "value", "unit"):
            table.add_column(col)
        for k, m in rows.items():
            table.add_row(text(k), "not measured" if m.value is None else f"{m.value:.4g}", text(m.unit))
        console.print(table)
        for k, m in rows.items():
            if m.value is None:
                say(f"{k}: {m.reason}")
    return int(ExitCode.NOT_MEASURED) if any(m.value is None for m in rows.values()) else 0


# --- generator commands: generate --------------------------------------------------------------------------------


# --- gate commands: review, compare, weights, ledger, demo ---------------------------------------------------------
# The printed verdict and the exit code both come from the run's record (one computation: gate.policy.decide).


def _run_gate(req, json_out: bool) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from gate.run import run

    if json_out:
        outcome = run(req)
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("starting", total=None)
            outcome = run(req, progress=lambda msg: bar.update(task, description=printable(msg)))
    if json_out:
        typer.echo(outcome.record.to_json())
    else:
        for line in verdict_lines(outcome.record, outcome.directory):
            console.print(line)
    return int(outcome.exit_code)


def verdict_lines(rec, directory) -> list[Text]:
    """What a gate run prints: the decision and output path, the reasons, the counts, where the reports are."""
    colour = "green" if rec.decision == "released" else "red"
    counts = rec.check_counts()
    return [
        text((rec.decision.upper(), f"bold {colour}"), f" {rec.output.path}"),
        *(text(f"  - {r}") for r in rec.reasons),
        text(
            f"  checks: {counts['pass']} passed, {counts['fail']} failed, {counts['not_measured']} not measured; "
            f"watermark {rec.watermark.payload}; manifest {rec.provenance.manifest_state}"
        ),
        text(f"  record and reports: {directory}"),
    ]


def _signer_and_trust(trust: str | None):
    from provenance.keys import SignerConfig, dev_trust_anchor, load_trust_anchors

    config = SignerConfig.from_env()
    return config, load_trust_anchors(trust) or dev_trust_anchor(config)


def _ledger_path(ledger: str | None):
    """The ledger's locator: a PostgreSQL URL as given, an SQLite file as a path (see ``gate.database.resolve``)."""
    from pathlib import Path

    from gate.database import is_postgres, resolve

    locator = resolve(ledger)
    return locator if is_postgres(locator) else Path(locator)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container) and no $USER
        return f"uid{os.getuid()}"


def _acting_user(name: str | None) -> str:
    """A person's name from an option, else ``$HALLO3_GATE_USER``, else the OS user."""
    return name or os.environ.get(USER_ENV) or _os_user()


@app.command("review")
def review_command(
    video: str = typer.Argument(..., help="The existing talking-portrait video to gate."),
    reference: str = typer.Option(
        ..., "--reference", help=f"The reference portrait it must show ({PORTRAIT_FORMATS})."
    ),
    audio: str = typer.Option(..., "--audio", help=f"The speech it was driven by ({SPEECH_FORMATS})."),
    out: str = typer.Option(..., "--out", help="Output directory: released/, quarantine/, staging/."),
    policy: str | None = typer.Option(None, "--policy", help="Policy TOML (default: the shipped default policy)."),
    ledger: str | None = typer.Option(None, "--ledger", help=LEDGER_HELP),
    trust: str | None = typer.Option(None, "--trust", help="PEM trust anchors for verifying after signing."),
    fvd_reference: str | None = typer.Option(None, "--fvd-reference", help="FVD reference statistics (.npz)."),
    baseline: str | None = typer.Option(None, "--baseline", help="A baseline run directory for regression limits."),
    crf: int = typer.Option(18, "--crf", help="H.264 CRF of the watermarked re-encode (0-51)."),
    submitted_by: str | None = typer.Option(None, "--submitted-by", help=SUBMITTED_BY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the audit record as JSON."),
) -> int:
    """Gate an existing video: watermark, encode, measure, decide, sign, verify, record, release or quarantine.

    Example: hallo3-gate review clip.mp4 --reference face.jpg --audio speech.wav --out runs/ --json

    Exit codes: 0 released; 1 a required check failed (quarantined); 2 usage/config error; 3 something required could
    not be measured (quarantined, fail closed); 4 bad input file; 5 signing/verification failed (quarantined);
    6 every automated check passed and the policy's [review] asks for people: the run waits in OUT/pending/ for
    approval (not released; approve or reject it in `hallo3-gate serve` or its API);
    74 an output could not be written (nothing released).
    """
    from pathlib import Path

    from gate.run import RunRequest

    signer, anchors = _signer_and_trust(trust)
    req = RunRequest(
        submitted_by=_acting_user(submitted_by),
        mode="review",
        out_dir=Path(out),
        portrait=Path(reference),
        audio=Path(audio),
        video=Path(video),
        policy_path=Path(policy) if policy else None,
        ledger_path=_ledger_path(ledger),
        signer=signer,
        trust_anchors_pem=anchors,
        crf=crf,
        fvd_reference=Path(fvd_reference) if fvd_reference else None,
        baseline_dir=Path(baseline) if baseline else None,
    )
    return _run_gate(req, json_out)


@app.command("generate")
def generate_command(
    portrait: str = typer.Option(..., "--portrait", help=f"The reference portrait ({PORTRAIT_FORMATS})."),
    audio: str = typer.Option(..., "--audio", help=f"The driving speech ({SPEECH_FORMATS})."),
    out: str = typer.Option(..., "--out", help="Output directory: released/, quarantine/, staging/."),
    prompt: str = typer.Option("", "--prompt", help="Scene description (Hallo3 backend; T5, 226 tokens max)."),
    backend: str = typer.Option("hallo3", "--backend", help="hallo3 (needs --model), still (baseline), hallo3-tiny."),
    model: str | None = typer.Option(
        None, "--model", help="Hallo3 weights: the official release dir or a converted one."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (recorded)."),
    steps: int | None = typer.Option(None, "--steps", help="Denoising steps (default 50 for hallo3)."),
    sampler: str | None = typer.Option(
        None,
        "--sampler",
        help="Hallo3 backends: official (default; the official SAT sampler) or diffusers-dpm (CogVideoXDPMScheduler).",
    ),
    policy: str | None = typer.Option(None, "--policy", help="Policy TOML (default: the shipped default policy)."),
    ledger: str | None = typer.Option(None, "--ledger", help=LEDGER_HELP),
    trust: str | None = typer.Option(None, "--trust", help="PEM trust anchors for verifying after signing."),
    fvd_reference: str | None = typer.Option(None, "--fvd-reference", help="FVD reference statistics (.npz)."),
    crf: int = typer.Option(18, "--crf", help="H.264 CRF (0-51)."),
    submitted_by: str | None = typer.Option(None, "--submitted-by", help=SUBMITTED_BY_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the audit record as JSON."),
) -> int:
    """Generate a talking video from a portrait and speech, then gate it like `review`.

    Example: hallo3-gate generate --portrait face.jpg --audio speech.wav --backend still --out runs/

    Backends: `hallo3` (the real model; --model DIR with the official release or a converted checkpoint), `still`
    (the portrait repeated: a calibration baseline that should fail lip sync), `hallo3-tiny` (the real pipeline code
    with tiny RANDOM weights: exercises the machinery, makes noise, never a real result).
    Exit codes as for `review` (6: passed, waiting in OUT/pending/ for human approval).
    """
    from pathlib import Path

    from gate.run import RunRequest

    signer, anchors = _signer_and_trust(trust)
    req = RunRequest(
        submitted_by=_acting_user(submitted_by),
        mode="generate",
        out_dir=Path(out),
        portrait=Path(portrait),
        audio=Path(audio),
        prompt=prompt or None,
        backend=backend,
        model_dir=Path(model) if model else None,
        seed=seed,
        steps=steps,
        sampler=sampler,
        policy_path=Path(policy) if policy else None,
        ledger_path=_ledger_path(ledger),
        signer=signer,
        trust_anchors_pem=anchors,
        crf=crf,
        fvd_reference=Path(fvd_reference) if fvd_reference else None,
    )
    return _run_gate(req, json_out)


def _existing_ledger(ledger: str | None):
    """The selected ledger, which must exist (inspecting commands never create one) and be a hallo3-gate ledger."""
    from gate.ledger import Ledger

    return Ledger(_ledger_path(ledger))


@ledger_app.command("verify")
def ledger_verify(
    ledger: str | None = typer.Option(None, "--ledger", help=LEDGER_HELP),
    expect_head: str | None = typer.Option(None, "--expect-head", help="A row hash anchored elsewhere earlier."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Recompute the hash chain; name every edited, deleted or reordered row.

    Exit codes: 0 intact; 1 tampered (the problems are listed); 2 the ledger file does not exist; 4 it is not a
    hallo3-gate ledger (empty, not SQLite, another application's database).
    """
    import json

    lg = _existing_ledger(ledger)
    rep = lg.verify(expect_head=expect_head)
    if json_out:
        typer.echo(
            json.dumps({"ok": rep.ok, "rows": rep.rows, "head": rep.head, "problems": list(rep.problems)}, indent=2)
        )
    else:
        say(f"{lg.display}: {rep.rows} rows, head {rep.head}: ", ("intact", "green") if rep.ok else ("TAMPERED", "red"))
        for p in rep.problems:
            say(f"  - {p}")
    return 0 if rep.ok else int(ExitCode.GATE_FAILED)


def _payload_hex(value: str) -> str:
    """A watermark payload as the ledger stores it (lower-case hex of ``PAYLOAD_BYTES`` bytes), else a usage error."""
    from provenance.watermark import PAYLOAD_BYTES

    hexdigits = set("0123456789abcdef")
    lowered = value.strip().lower()
    if len(lowered) != 2 * PAYLOAD_BYTES or not set(lowered) <= hexdigits:
        raise UsageError("--payload", f"must be {2 * PAYLOAD_BYTES} hexadecimal digits (a watermark payload)", value)
    return lowered


@ledger_app.command("show")
def ledger_show(
    ledger: str | None = typer.Option(None, "--ledger", help=LEDGER_HELP),
    payload: str | None = typer.Option(None, "--payload", help="Only the run whose watermark payload is this hex."),
    json_out: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> int:
    """List the ledger's rows (or the one matching a watermark payload).

    Exit codes: 0 listed; 1 --payload matches no row; 2 the ledger file does not exist, or --payload is not a
    payload's hex; 4 it is not a hallo3-gate ledger.
    """
    import json

    from rich.table import Table

    if payload is not None:
        payload = _payload_hex(payload)
    lg = _existing_ledger(ledger)
    rows = [r for r in [lg.find_by_payload(payload)] if r] if payload else lg.rows()
    if json_out:
        keys = ("seq", "run_id", "created_at", "decision", "output_path", "payload_hex", "row_hash")
        typer.echo(json.dumps([{k: getattr(r, k) for k in keys} for r in rows], indent=2))
        return 0 if rows or not payload else int(ExitCode.GATE_FAILED)
    table = Table("seq", "run", "created", "decision", "payload", "output")
    for r in rows:
        cells = (str(r.seq), r.run_id, r.created_at, r.decision, r.payload_hex or "-", r.output_path)
        table.add_row(*(text(c) for c in cells))
    console.print(table)
    return 0 if rows or not payload else int(ExitCode.GATE_FAILED)


# --- users: people who review runs ------------------------------------------------------------------------------------


def _users_db(db: str | None, *, create: bool = False):
    from gate.database import Database

    return Database.open(db, create=create)


def _read_password_stdin() -> str:
    """One line of standard input without its line break, ``\n`` or ``\r\n`` (a password is never an argument: ps
    shows arguments)."""
    line = sys.stdin.readline()
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="The user name: 1-64 of a-z 0-9 . _ - (first a letter or digit)."),
    role: str = typer.Option(..., "--role", help="viewer, reviewer, approver or admin."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password (12-1024 characters) from the first line of stdin."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Add a user with a role; the password comes on standard input and is stored only as its Argon2 hash.

    Example: printf '%s\\n' "$PASSWORD" | hallo3-gate users add alice --role approver --password-stdin

    Roles: viewer reads; reviewer also comments, claims and rejects; approver also approves; admin also manages users.
    The database is created if it does not exist. The change is a ledger row (never the password).

    Exit codes: 0 added; 2 no --password-stdin, a bad name, role or password, or the name is taken; 4 --db is not a
    hallo3-gate database; 74 the database cannot be written or reached.
    """
    from gate.users import add_user, check_name, check_password, check_role

    check_name(name)
    check_role(role)
    if not password_stdin:
        raise UsageError("--password-stdin", "the password must come on standard input (never as an argument)")
    password = check_password(_read_password_stdin())
    user = add_user(_users_db(db, create=True), name, role, password, actor=_acting_user(actor))
    say(f"added {user.name} ({user.role})")
    return 0


@users_app.command("list")
def users_list(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> int:
    """List the users: name, role, whether disabled.

    Exit codes: 0 listed; 2 --db names no database; 4 --db is not a hallo3-gate database; 74 it cannot be read.
    """
    import json

    from rich.table import Table

    from gate.users import list_users

    users = list_users(_users_db(db))
    if json_out:
        typer.echo(json.dumps([{"name": u.name, "role": u.role, "disabled": u.disabled} for u in users], indent=2))
        return 0
    table = Table("name", "role", "state")
    for u in users:
        table.add_row(text(u.name), text(u.role), text("disabled" if u.disabled else "enabled"))
    console.print(table)
    return 0


def _set_disabled(name: str, disabled: bool, db: str | None, actor: str | None) -> int:
    from gate.users import set_disabled

    user = set_disabled(_users_db(db), name, disabled, actor=_acting_user(actor))
    say(f"{user.name}: {'disabled (every session ended)' if disabled else 'enabled'}")
    return 0


@users_app.command("disable")
def users_disable(
    name: str = typer.Argument(..., help="The user."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Disable a user: their sessions end, and logins and API tokens are refused until enabled again.

    Exit codes: 0 disabled; 2 unknown user, already disabled, or --db names no database; 4 --db is not a hallo3-gate
    database; 74 the database cannot be written or reached.
    """
    return _set_disabled(name, True, db, actor)


@users_app.command("enable")
def users_enable(
    name: str = typer.Argument(..., help="The user."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Enable a disabled user again (their unrevoked API tokens work again).

    Exit codes: 0 enabled; 2 unknown user, not disabled, or --db names no database; 4 --db is not a hallo3-gate
    database; 74 the database cannot be written or reached.
    """
    return _set_disabled(name, False, db, actor)


@users_app.command("role")
def users_role(
    name: str = typer.Argument(..., help="The user."),
    role: str = typer.Option(..., "--role", help="viewer, reviewer, approver or admin."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Change a user's role.

    Exit codes: 0 changed; 2 unknown user or role, the same role, or --db names no database; 4 --db is not a
    hallo3-gate database; 74 the database cannot be written or reached.
    """
    from gate.users import set_role

    user = set_role(_users_db(db), name, role, actor=_acting_user(actor))
    say(f"{user.name}: role {user.role}")
    return 0


@users_app.command("token")
def users_token(
    name: str = typer.Argument(..., help="The user the token acts as."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Print a new API token for NAME, once (only its sha256 is stored): `Authorization: Bearer <token>`.

    Exit codes: 0 printed; 2 unknown user or --db names no database; 4 --db is not a hallo3-gate database;
    74 the database cannot be written or reached.
    """
    from gate.users import new_token

    typer.echo(new_token(_users_db(db), name, actor=_acting_user(actor)))
    return 0


@users_app.command("revoke-tokens")
def users_revoke_tokens(
    name: str = typer.Argument(..., help="The user."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who does this (default $HALLO3_GATE_USER, else OS user)."),
) -> int:
    """Revoke every API token of NAME.

    Exit codes: 0 revoked (the count is printed); 2 unknown user or --db names no database; 4 --db is not a
    hallo3-gate database; 74 the database cannot be written or reached.
    """
    from gate.users import revoke_tokens

    n = revoke_tokens(_users_db(db), name, actor=_acting_user(actor))
    say(f"{name}: {n} token{'s' if n != 1 else ''} revoked")
    return 0


@weights_app.command("list")
def weights_list(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """Every weight file the system knows: source, sha256, size, licence, user, and where it resolves here.

    Exit codes: 0 listed.
    """
    import json

    from rich.table import Table

    from gate import weights

    rows = []
    for name in weights.names():
        w = weights.REGISTRY[name]
        p = weights.resolve(name)
        rows.append({**w.to_dict(), "resolved": str(p) if p else None})
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return 0
    table = Table("name", "file", "here", "licence", "used by", "source")
    for r in rows:
        here = text(r["resolved"]) if r["resolved"] else text(("missing", "red"))
        table.add_row(
            text(r["name"]), text(r["filename"]), here, text(r["licence"]), text(r["used_by"]), text(r["source"])
        )
    console.print(table)
    return 0


@weights_app.command("fetch")
def weights_fetch(
    names: list[str] = typer.Argument(..., help="Registry names (see `weights list`)."),
    force: bool = typer.Option(False, "--force", help="Download even if a copy resolves."),
    offline: bool = typer.Option(False, "--offline", help="Never use the network (fail if missing)."),
) -> int:
    """Download weight files into the user cache, verifying size and sha256 (a mismatch is an error).

    Exit codes: 0 every file present and verified; 2 an unknown name; 3 a download failed, was refused (--offline)
    or did not match its pinned size/sha256 (nothing is kept).
    """
    import os

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from gate import weights

    if offline:
        os.environ["HALLO3_GATE_OFFLINE"] = "1"
    for name in names:
        weights.entry(name)  # unknown names fail before any download
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
    ) as bar:
        for name in names:
            task = bar.add_task(name, total=weights.REGISTRY[name].size)

            def step(n: int, total: int | None, task=task) -> None:
                bar.update(task, advance=n, total=total)

            path = weights.fetch(name, force=force, progress=step)
            bar.update(task, completed=path.stat().st_size, total=path.stat().st_size)
            say(f"{name}: {path}")
    return 0


@weights_app.command("verify")
def weights_verify(
    names: list[str] = typer.Argument(None, help="Registry names (default: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> int:
    """Recompute the sha256 of every resolvable weight file against its pinned value.

    Exit codes: 0 no mismatch (missing files are listed, not errors); 1 a file does not match its pin; 2 an unknown
    name.
    """
    import json

    from gate import weights

    results = [weights.verify(n) for n in (names or list(weights.names()))]
    if json_out:
        typer.echo(json.dumps([{**r.__dict__, "path": str(r.path) if r.path else None} for r in results], indent=2))
    else:
        for r in results:
            colour = {"ok": "green", "unpinned": "yellow", "missing": "dim", "mismatch": "red"}[r.status]
            say((f"{r.status:9}", colour), f" {r.name:24} {r.path or ''}")
    return int(ExitCode.GATE_FAILED) if any(r.status == "mismatch" for r in results) else 0


@app.command("compare")
def compare_command(
    run_dirs: list[str] = typer.Argument(..., help="Run directories, one model/backend each (records found inside)."),
    out: str = typer.Option(
        ...,
        "--out",
        help="Where to write report.html/.pdf and summary.md (the executive report), comparison.html/.pdf (every "
        "metric), results.parquet, summary.json and the per-video CSV/Parquet.",
    ),
    label: list[str] = typer.Option(None, "--label", help="A display name per run directory, in order."),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF."),
    json_out: bool = typer.Option(False, "--json", help="Print the written paths as JSON."),
) -> int:
    """The executive model-comparison report: per metric mean ± 95 % CI, sample counts, winner, plots, summary.

    Example: hallo3-gate compare runs/hallo3 runs/still --out reports/compare

    Exit codes: 0 written; 2 usage error (not one distinct --label per run directory, --out is not a directory);
    4 a run directory is missing, empty or holds an invalid record; 74 a file could not be written.
    """
    import json
    from pathlib import Path

    from reports.compare import build_comparison, check_labels, check_out_dir, load_runs, write_comparison

    if label:
        check_labels(label, len(run_dirs), subject="--label")
    check_out_dir(Path(out))
    df = load_runs(run_dirs, labels=label or None)
    paths = write_comparison(build_comparison(df), out, pdf=not no_pdf)
    if json_out:
        typer.echo(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    else:
        for kind, p in paths.items():
            say(f"{kind:8} {p}")
    return 0


@app.command("evaluate")
def evaluate_command(
    suite_file: str = typer.Argument(..., metavar="SUITE.toml", help="The suite: models, cases, policy, regression."),
    out: str = typer.Option(..., "--out", help="The evaluation's directory (new, empty, or this suite's earlier one)."),
    db: str | None = typer.Option(None, "--db", help="The ledger and consent registry (default OUT/gate.sqlite)."),
    use_ray: bool = typer.Option(
        False, "--ray", help="Run the cases on a local Ray cluster using this machine's cores."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Run on an existing Ray cluster (implies --ray)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Ray: generator actors in the pool (default 2)."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="A previous evaluate OUT directory or its summary.json: compare to it."
    ),
    fail_on: str | None = typer.Option(None, "--fail-on", help="regression: exit 1 when a model regressed."),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF report (HTML and Markdown are still written)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary (and the written paths) as JSON."),
) -> int:
    """Evaluate models on a suite of cases: every (model, case) through the full gate, resumable.

    Example: hallo3-gate evaluate suite.toml --out eval/ --baseline eval-prod/ --fail-on regression

    Writes OUT/results.parquet (one row per model and case), OUT/summary.json (per model: release rate with its
    Wilson 95 % interval, metric means with bootstrap 95 % intervals, FVD, seconds of compute per second of video),
    OUT/runs/<model>/ (the gate's run directories), the report OUT/report.html, OUT/report.pdf and OUT/summary.md
    (appended to $GITHUB_STEP_SUMMARY when set, with OUT/regression.md) and, with --baseline,
    OUT/regression.{json,md} and OUT/regression-junit.xml. An interrupted evaluation continues where it stopped when
    run again.

    Exit codes: 0 done (and no regression with --fail-on regression); 1 a model regressed against the baseline
    (with --fail-on regression); 2 usage error (a bad suite key, --fail-on without --baseline, --out holding
    something else); 4 a suite's input file is missing or unreadable, or a bad baseline; 74 an output could not be
    written. A gate failure of a case is a result (its row says quarantined), not an exit code.
    """
    import json
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gate.evaluate import ProgressEvent, evaluate
    from gate.suite import Suite

    if fail_on is not None and fail_on != "regression":
        raise UsageError("--fail-on", "must be regression", fail_on)
    if fail_on is not None and baseline is None:
        raise UsageError("--fail-on", "needs --baseline (what the models are compared to)")
    if workers is not None and workers < 1:
        raise UsageError("--workers", "must be at least 1", workers)
    ray_wanted = use_ray or ray_address is not None
    if workers is not None and not ray_wanted:
        raise UsageError("--workers", "applies only with --ray or --ray-address")
    suite = Suite.load(Path(suite_file))
    ray_settings = None
    if ray_wanted:
        try:
            from gate.evaluate_ray import RaySettings
        except ImportError as exc:
            raise UsageError(
                "--ray", "needs the Ray path (gate.evaluate_ray) and ray[data] installed", str(exc)
            ) from None
        ray_settings = RaySettings(address=ray_address, num_cpus=None, workers=workers or 2)

    bars = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out or not err_console.is_terminal,
    )
    tasks = {name: bars.add_task(name, total=len(suite.cases)) for name in suite.models}

    def on_progress(e: ProgressEvent) -> None:
        if e.kind in ("skip", "case") and e.model in tasks:
            bars.advance(tasks[e.model])
        if e.kind == "note" or (e.kind == "start" and not json_out):
            bars.console.print(text(e.message))
        if e.kind == "case" and e.result is not None and not bars.disable:
            bars.console.print(text(f"{e.model}/{e.case}: ", (str(e.result.row["decision"]), "bold")))

    with bars:
        result = evaluate(
            suite,
            Path(out),
            ray=ray_settings,
            progress=on_progress,
            db=db,
            baseline=Path(baseline) if baseline else None,
        )
    from reports.evaluation import append_step_summary, render_evaluation_dir

    report = render_evaluation_dir(result.out_dir, pdf=not no_pdf)
    append_step_summary(report["markdown"])
    if result.regression is not None:
        append_step_summary(result.out_dir / "regression.md")
    paths = {"results": result.results_path, "summary": result.summary_path, **report}
    if json_out:
        typer.echo(json.dumps({**result.summary, "paths": {k: str(v) for k, v in paths.items()}}, indent=2))
    else:
        for name, m in result.summary["models"].items():
            rate = m["release_rate"]
            say(name, f": released {m['released']}/{m['cases']}", f" ({rate:.0%})" if rate is not None else "")
        say(f"ran {result.ran}, already done {result.skipped}")
        for kind, p in paths.items():
            say(f"{kind:8} {p}")
        if result.regression is not None:
            verdict = ("regression", "bold red") if result.regressed else ("no regression", "green")
            say(verdict, f" against {result.regression['baseline']}")
    if fail_on == "regression" and result.regressed:
        return int(ExitCode.GATE_FAILED)
    return 0


@app.command("fvd-stats")
def fvd_stats_command(
    videos: list[str] = typer.Argument(..., help="Reference videos (real footage of the kind the model should make)."),
    out: str = typer.Option(..., "--out", help="The statistics file to write (.npz; merge-able, no pickle)."),
    protocol: str = typer.Option(
        "clips-16f", "--protocol", help="clips-16f (every 16-frame window) or styleganv-16f (first 16 frames)."
    ),
) -> int:
    """Build FVD reference statistics (I3D features, sums in float64) for `--fvd-reference` and policy FVD checks.

    Example: hallo3-gate fvd-stats refs/*.mp4 --out refs.npz

    Exit codes: 0 written; 2 unknown --protocol, or --out under a file; 3 the I3D weights are missing or do not match
    their pin; 4 an unreadable or incomplete video, or fewer than 2 samples of 16 frames; 74 --out is not a regular
    file or cannot be written. Inputs and --out are checked before anything is computed.
    """
    from gate import media
    from gate.measure import i3d_extractor
    from metrics.fvd import PROTOCOL_CLIPS, PROTOCOL_STYLEGANV, FVDState
    from reports.atomic import check_output_target

    if protocol not in (PROTOCOL_CLIPS, PROTOCOL_STYLEGANV):
        raise UsageError("--protocol", f"must be {PROTOCOL_CLIPS} or {PROTOCOL_STYLEGANV}", protocol)
    check_output_target(out)  # inputs and output are checked before the weights are looked for or any video decoded
    for v in videos:
        media.validate_video(v)
    extractor = i3d_extractor()
    state = FVDState(protocol)
    for v in videos:
        state.update([media.read_video(v).frames], extractor)
    if state.count < 2:
        raise InputError(", ".join(videos), f"need at least 2 samples of 16 frames under {protocol}", state.count)
    path = state.save(out)
    say(f"{path}: {state.count} samples from {state.n_videos} videos ({protocol})")
    return 0


@app.command("demo")
def demo_command(
    out: str = typer.Option("demo-out", "--out", help="Directory for inputs, runs, ledger and reports."),
    backends: list[str] = typer.Option(
        ["puppet", "still", "hallo3-tiny"], "--backend", help="Backends to run (repeat the option)."
    ),
    policy: str | None = typer.Option(None, "--policy", help="Policy TOML (default: the shipped offline policy)."),
) -> int:
    """Run the whole gate offline on a real portrait (scikit-image astronaut) and real synthesised speech (espeak-ng).

    A suite of every backend that runs without downloaded weights × three cases (the portrait framed three ways, three
    sentences) goes through `evaluate`: generate → label → watermark → encode → measure → decide → sign → verify →
    record → report for each, then the executive report (scorecard with intervals, verdict, distributions). A released
    output is verified from disk and again with its manifest stripped (watermark → ledger), and the ledger chain is
    checked.

    Then the human step: a puppet run under the offline-review policy waits as pending (exit 6), and two demo
    approvers approve it through the review service's JSON API (started on a free local port) until it is released.

    Exit codes: 0 every step ran and the checks held (a backend's quarantine is an expected result, not a failure);
    5 a verified output's ledger record was not found, the ledger chain is broken, or the reviewed run was not
    released by the two approvals; 2/4 bad options or inputs.
    """
    from pathlib import Path

    from gate.demo import run_demo

    result = run_demo(
        Path(out),
        backends=tuple(backends),
        policy=Path(policy) if policy else None,
        say=say,
    )
    say("")
    say((f"{PROG} demo: results", "bold"))
    say(f"  provider named in the disclosures: {result.provider}; consent record {result.consent_id}")
    for r in result.runs:
        colour = "green" if r["decision"] == "released" else "red"
        say(
            "  ",
            (f"{str(r['decision']).upper():11}", colour),
            f" {r['backend']:12} {r['case']:9} exit {r['exit_code']}  {r['video']}",
        )
        for reason in r["reasons"]:  # type: ignore[union-attr]
            say(f"      - {reason}")
        say(f"      compliance: {r.get('compliance', '-')}; report: {r['report']}")
    ev = result.evaluation
    say(f"  executive report: {ev.get('html')}  {ev.get('pdf')}")
    v = result.verify
    state = f"{v['manifest']}" + (" (claim signer trusted)" if v.get("signer_trusted") else "")
    say(
        f"  verify {v['file']}: manifest {state}, watermark {v['watermark']}, "
        f"ledger record {'found' if v['record'] else 'NOT found'}"
    )
    say(
        f"  verify the stripped copy {v['stripped_file']}: manifest {v['stripped_manifest'] or 'absent'}, "
        f"watermark {v['stripped_watermark']}, ledger record {'found' if v['stripped_record'] else 'NOT found'}"
    )
    rv = result.review
    say(f"  human review of run {rv.get('run_id')}: submitted {rv.get('submitted')}")
    for step in rv.get("states", []):  # type: ignore[union-attr]
        say(f"      approved by {step['approver']} through the API → {step['state']}")
    say(f"      now {rv.get('final', rv.get('submitted'))}; demo users and passwords: {rv.get('users_file', '-')}")
    led = result.ledger
    say(f"  serve the reviewer app on it: {PROG} serve --runs {Path(out) / 'runs' / 'review'} --db {led['path']}")
    say("      then open http://127.0.0.1:8000/ (log in as a demo approver) or http://127.0.0.1:8000/detect")
    say(f"  ledger {led['path']}: {led['rows']} rows, chain {'intact' if led['ok'] else 'BROKEN'}")
    ok = bool(led["ok"]) and v["record"] is not None and v["stripped_record"] is not None
    ok = ok and rv.get("final") == "released"  # the human step ran: two approvals through the API released it
    return 0 if ok else int(ExitCode.PROVENANCE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code.

    Every exception, whichever click/typer flavour raised it, goes through ``reports.errors.exit_status``: usage
    errors exit 2 with click's usage message, a ``Hallo3Error`` its own code, an ``OSError`` 74, Ctrl-C 130, anything
    else 70 with one line naming the log file that holds the traceback (printed here instead with ``--debug``).
    """
    _Options.debug = False
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else 0
    except BaseException as exc:  # the one place where any exception becomes an exit code
        debug = _Options.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
        status = exit_status(exc, debug=debug)
        if status.internal and debug:
            traceback.print_exception(exc, file=sys.stderr)
        if status.message:
            print(status.message, file=sys.stderr, flush=True)
        code = int(status.code)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
