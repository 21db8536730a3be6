"""The ``hallo3-gate`` command line.

Commands are thin: they parse arguments, call the package that owns the work, and print (``--json`` for machines).
Every ``Hallo3Error`` becomes one line on stderr and its exit code (see ``reports.errors.ExitCode``); no traceback
is shown for a user mistake. Each section below belongs to one part of the system.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from reports.errors import ExitCode, Hallo3Error

app = typer.Typer(
    name="hallo3-gate",
    help="Measure, watermark, sign, verify, record and report every Hallo3 video - or quarantine it with the reason.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Signing credentials (development PKI, production PEM/KMS).", no_args_is_help=True)
weights_app = typer.Typer(help="The weight-file registry: list, fetch, verify.", no_args_is_help=True)
ledger_app = typer.Typer(help="The tamper-evident ledger of every gate run.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(weights_app, name="weights")
app.add_typer(ledger_app, name="ledger")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)


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
    """
    import json

    from provenance.keys import init_dev_keys

    paths = init_dev_keys(directory, force=force)
    if json_out:
        typer.echo(json.dumps(paths.to_dict(), indent=2))
    else:
        console.print(f"development keys written to {paths.directory} (DEVELOPMENT - not for production)", markup=False)
        console.print(f"  signer chain : {paths.signer_chain}", markup=False)
        console.print(f"  signer key   : {paths.signer_key} (mode 0600)", markup=False)
        console.print(f"  trust anchor : {paths.root_cert}", markup=False)
    return 0


@keys_app.command("show")
def keys_show(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """Load and check the configured signing credentials; print the certificates (never the key)."""
    import json

    from provenance.keys import SignerConfig, load_signer

    config = SignerConfig.from_env()
    signer = load_signer(config)
    info = {"source": config.describe(), **signer.to_dict()}
    if json_out:
        typer.echo(json.dumps(info, indent=2))
    else:
        console.print_json(data=info)
    return 0


@app.command("verify")
def verify_command(
    file: str = typer.Argument(..., help="The MP4 to verify."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the tree."),
    trust: str | None = typer.Option(
        None, "--trust", help="PEM trust anchors (default $HALLO3_GATE_TRUST_ANCHORS; else built-in list only)."
    ),
    require_trusted: bool = typer.Option(
        False, "--require-trusted", help="Treat a Valid-but-untrusted signer as a failure."
    ),
) -> int:
    """Verify a video from disk: its C2PA manifest, its invisible watermark, and that both name the same payload.

    Exit codes:
    0 verified: manifest Trusted or Valid (Trusted only with --require-trusted), watermark = its soft-binding payload;
    5 not verified: no manifest, manifest Invalid, watermark absent or disagreeing (report printed, reasons on stderr);
    4 the file is not a readable, complete MP4;
    2 bad arguments (e.g. an unreadable --trust file).
    """
    import json

    from gate import media
    from gate.verify_view import ledger_lookup, verify_tree
    from provenance.keys import load_trust_anchors
    from provenance.verify import verify

    anchors = load_trust_anchors(trust)
    report = verify(
        file, media.iter_frames(file), trust_anchors_pem=anchors, require_trusted=require_trusted, lookup=ledger_lookup
    )
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        wide = console if console.is_terminal else Console(highlight=False, soft_wrap=True, width=160)
        wide.print(verify_tree(report))
    if not report.verified:
        err_console.print(f"hallo3-gate: {file}: not verified: {'; '.join(report.reasons)}", markup=False)
        return int(ExitCode.PROVENANCE)
    return 0


@app.command("stamp")
def stamp_command(
    in_video: str = typer.Argument(..., help="An existing talking-portrait video (with its audio track)."),
    out: str = typer.Argument(..., help="The watermarked, signed MP4 to write (appears complete or not at all)."),
    portrait: str = typer.Option(..., "--portrait", help="The reference portrait (JPEG/PNG), a manifest ingredient."),
    audio: str = typer.Option(..., "--audio", help="The speech audio (WAV/MP3), a manifest ingredient."),
    crf: int = typer.Option(18, "--crf", help="H.264 CRF of the re-encode (0-51)."),
    trust: str | None = typer.Option(None, "--trust", help="PEM trust anchors for the verification after signing."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Watermark every frame, re-encode (H.264 + AAC), sign a C2PA manifest last, then verify the file from disk.

    Signs with HALLO3_GATE_SIGN_CHAIN + HALLO3_GATE_SIGN_KEY, else the development keys (`hallo3-gate keys init`).
    Nothing is left at OUT on failure.

    Exit codes:
    0 stamped and verified;
    4 bad input: not a video, truncated, no audio track, unreadable ingredient;
    5 signing or verification failed: bad credentials, or the output did not verify;
    2 bad arguments.
    """
    import json
    from pathlib import Path

    from gate.stamp import stamp
    from provenance.keys import SignerConfig, dev_trust_anchor, load_signer, load_trust_anchors

    config = SignerConfig.from_env()
    signer = load_signer(config)
    anchors = load_trust_anchors(trust) or dev_trust_anchor(config)
    if signer.development:
        err_console.print("hallo3-gate: warning: signing with DEVELOPMENT keys (not trusted outside this machine)")
    result = stamp(
        in_video, out, portrait=Path(portrait), audio=Path(audio), signer=signer, trust_anchors_pem=anchors, crf=crf
    )
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        m = result.verify.manifest
        console.print(
            f"{result.path}: watermarked ({result.frames} frames, payload {result.payload_hex}), "
            f"signed ({result.sign.alg}), verified from disk: manifest {m.state}",
            markup=False,
        )
    return 0


# --- metrics commands: measure ---------------------------------------------------------------------------------


# --- generator commands: generate --------------------------------------------------------------------------------


# --- gate commands: review, compare, weights, ledger, demo ---------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code."""
    try:
        rv = app(args=argv, prog_name="hallo3-gate", standalone_mode=False)
    except Hallo3Error as exc:
        err_console.print(f"hallo3-gate: error: {exc.one_line()}", markup=False)
        code = int(exc.exit_code)
    except click.exceptions.Exit as exc:
        code = int(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        code = int(ExitCode.USAGE)
    except click.exceptions.Abort:
        err_console.print("hallo3-gate: aborted", markup=False)
        code = 130
    else:
        code = int(rv) if isinstance(rv, int) else 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
