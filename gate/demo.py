"""``hallo3-gate demo``: the whole gate, offline, on real inputs made on this machine.

Inputs: a real portrait photo (scikit-image's ``astronaut``) and real synthesised speech (Debian's ``espeak-ng``).
Runs every generator backend that works without downloaded weights — ``puppet`` (positive control: the portrait's
mouth opened by the speech envelope), ``still`` (negative control: the portrait repeated) and ``hallo3-tiny`` (the
real Hallo3 pipeline code with tiny random weights) — through the shipped *offline* policy (AV-sync instead of
Sync-C/Sync-D, whose SyncNet weights cannot be downloaded here; the default policy would fail closed with exit 3).
Then it verifies the first output from disk, again after stripping its manifest (watermark → ledger), checks the
ledger chain, and writes the model-comparison report. Everything lands under one output directory; nothing outside
it is touched except the development signing keys (created once in the user's keys directory if absent).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reports.errors import InputError, UsageError

OFFLINE_POLICY = Path(__file__).resolve().parent / "policies" / "offline.toml"
SPEECH = "A machine made this video. It carries a watermark and a signed manifest."  # about 5 s


@dataclass
class DemoResult:
    out_dir: Path
    inputs: dict[str, Path]
    runs: list[dict[str, object]] = field(default_factory=list)
    verify: dict[str, object] = field(default_factory=dict)
    ledger: dict[str, object] = field(default_factory=dict)
    comparison: dict[str, Path] = field(default_factory=dict)


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
    rep = Ledger(ledger_path).verify()
    result.ledger = {"path": str(ledger_path), "rows": rep.rows, "ok": rep.ok, "head": rep.head}

    df = load_runs([out_dir / "runs" / b for b in backends])
    result.comparison = write_comparison(build_comparison(df), out_dir / "comparison")
    return result
