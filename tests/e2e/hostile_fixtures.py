"""Shared helpers for the hostile-input suite (tests/e2e/test_hostile.py).

The CLI runs as a subprocess of the installed console script, exactly as a user or CI runs it: exit codes, stdout
and stderr are what a user sees. Each call gets a private HOME/XDG tree and ledger inside the test's sandbox.

Around every hostile call the sandbox is snapshotted (type, size, mtime_ns, sha256 of every file; symlink targets;
FIFOs and devices by type), so a test can assert that nothing of the user's changed and that nothing was written.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.conftest import TEST_PROVIDER
from tests.wav import write_wav

ROOT = Path(__file__).resolve().parents[2]
OFFLINE_POLICY = ROOT / "gate" / "policies" / "offline.toml"
W, H = 352, 288  # the talking clip's size: not square, so a rotation is visible in the output's shape
SECONDS = 3.0
FPS = 25.0
SR = 16000
CLI_TIMEOUT_S = 300  # a case that wrongly runs the whole gate still ends (and fails) instead of hanging CI

# exit codes of the decided contract (reports/errors.py ExitCode); written out so a drift in the code is caught
RELEASED, GATE_FAILED, USAGE, NOT_MEASURED, INPUT, PROVENANCE, INTERNAL, IO = 0, 1, 2, 3, 4, 5, 70, 74


def cli_path() -> Path:
    """The console script installed beside the interpreter running the tests (``.venv/bin/hallo3-gate``)."""
    exe = Path(sys.executable).with_name("hallo3-gate")
    if not exe.is_file():
        found = shutil.which("hallo3-gate")
        assert found, "the hallo3-gate console script is not installed (make install)"
        exe = Path(found)
    return exe


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ hallo3-gate {' '.join(self.argv)}\nexit {self.code} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


def base_env(home: Path, keys_dir: Path | None, ledger: Path, weights_dir: Path, mpl: Path) -> dict[str, str]:
    """A user environment confined to ``home``: nothing read from or written to the real HOME."""
    keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "OMP_NUM_THREADS", "HALLO3_GATE_TEST_DATA")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        MPLCONFIGDIR=str(mpl),  # shared across the session: matplotlib's font cache is built once
        HALLO3_GATE_LEDGER=str(ledger),
        HALLO3_GATE_WEIGHTS=str(weights_dir),  # empty: SyncNet/S3FD are never found, even on a developer's box
        HALLO3_GATE_OFFLINE="1",
        HALLO3_GATE_PROVIDER=TEST_PROVIDER,  # as a deployment configures it (the shipped policies require one)
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    if keys_dir is not None:
        env["HALLO3_GATE_KEYS_DIR"] = str(keys_dir)
    return env


def run_cli(
    argv: list[str] | tuple[str, ...], env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT_S
) -> Result:
    argv = tuple(str(a) for a in argv)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(cli_path()), *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise AssertionError(
            f"hallo3-gate {' '.join(argv)} ran past {timeout} s\n{out[-2000:]}\n{err[-2000:]}"
        ) from None
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


# --- snapshots ----------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entry(path: Path) -> tuple:
    st = os.lstat(path)
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return ("symlink", os.readlink(path))
    if stat.S_ISDIR(mode):
        return ("dir", stat.S_IMODE(mode))
    if stat.S_ISFIFO(mode):
        return ("fifo", stat.S_IMODE(mode))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return ("device", st.st_rdev)
    if stat.S_ISREG(mode):
        return ("file", st.st_size, st.st_mtime_ns, stat.S_IMODE(mode), _sha256(path))
    return ("other", mode)


def snapshot(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every entry under ``roots`` (not following symlinks), keyed by path. ``skip`` subtrees are left out."""
    snap: dict[str, tuple] = {}
    skipped = {str(s) for s in skip}
    for root in roots:
        if not os.path.lexists(root):
            continue
        stack = [Path(root)]
        while stack:
            p = stack.pop()
            if str(p) in skipped:
                continue
            e = _entry(p)
            snap[str(p)] = e
            if e[0] == "dir":
                stack.extend(sorted(p.iterdir()))
    return snap


def assert_unchanged(before: dict[str, tuple], after: dict[str, tuple]) -> None:
    """Every entry that existed before is still there, with the same type, size, mtime, mode and content."""
    changed = {p: (before[p], after.get(p)) for p in before if after.get(p) != before[p]}
    assert not changed, "the command changed what it did not create: " + "; ".join(
        f"{p}: {b} -> {a}" for p, (b, a) in sorted(changed.items())[:8]
    )


def new_entries(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return sorted(p for p in after if p not in before)


def released_videos(out: Path) -> list[Path]:
    rel = out / "released"
    return sorted(rel.rglob("*")) if rel.is_dir() else []


# --- messages -----------------------------------------------------------------------------------------------------


def error_lines(text: str) -> list[str]:
    """The non-empty stderr lines, less the development-keys warning that stamp/review print before working."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("hallo3-gate: warning")]


def assert_clean_failure(res: Result, code: int, *names: str, usage: bool = False) -> None:
    """The exact exit code; a short stderr message naming ``names``; no traceback anywhere."""
    assert res.code == code, f"expected exit {code}\n{res}"
    for stream in (res.stdout, res.stderr):
        assert "Traceback" not in stream and 'File "' not in stream, f"a traceback was printed\n{res}"
    lines = error_lines(res.stderr)
    assert lines, f"no message on stderr\n{res}"
    # click's usage errors carry a "Usage:" and "Try --help" line around the one-line error
    assert len(lines) <= (6 if usage else 1), f"stderr is not a one-line message ({len(lines)} lines)\n{res}"
    for name in names:
        assert name in res.stderr, f"stderr does not name {name!r}\n{res}"


LOG_PATH = re.compile(r"(/[^\s'\"]+\.(?:log|txt))")


def named_log(text: str) -> Path | None:
    for m in LOG_PATH.finditer(text):
        p = Path(m.group(1).rstrip(".,;:)"))
        if p.is_file():
            return p
    return None


# --- media --------------------------------------------------------------------------------------------------------


@dataclass
class Media:
    root: Path
    portrait: Path  # RGB PNG, W x H, the astronaut
    audio: Path  # 16 kHz mono PCM WAV, SECONDS long
    talking: Path  # the puppet positive control: H.264 + AAC MP4 the offline policy releases
    keys_dir: Path
    weights_dir: Path  # empty
    mpl: Path
    consent_db: Path  # a gate database holding one active consent record for the portrait's person
    extra: dict[str, Path] = field(default_factory=dict)


def build_media(root: Path) -> Media:
    """The portrait, speech and a talking clip the offline policy releases (the puppet backend: a positive control)."""
    from PIL import Image
    from skimage import data

    from gate import media, weights
    from gate.demo import make_speech
    from generator.puppet import PuppetBackend

    root.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(data.astronaut()).crop((40, 0, 512, 386))  # 472 x 386, the face well inside
    portrait = root / "portrait.png"
    face.resize((W, H), Image.Resampling.LANCZOS).save(portrait)
    speech = make_speech(root / "speech_full.wav")
    audio, sr = media.read_audio(speech, sample_rate=SR)
    audio = np.pad(audio, (0, max(0, int(SECONDS * sr) - audio.size)))[: int(SECONDS * sr)]
    wav = write_wav(root / "speech.wav", audio, sr)
    speech.unlink()
    out = PuppetBackend(weights.require("dlib_landmarks_68")).generate(media.read_image(portrait), audio, sr)
    talking = media.write_mp4(root / "talking.mp4", out.frames, out.fps, audio=out.audio, sample_rate=out.sample_rate)
    weights_dir = root / "no-weights"
    weights_dir.mkdir()
    mpl = root / "mpl"
    mpl.mkdir()
    keys_dir = root / "keys"
    home = root / "keys-home"
    env = base_env(home, None, root / "unused-ledger.sqlite", weights_dir, mpl)
    res = run_cli(["keys", "init", "--dir", str(keys_dir)], env, root)
    assert res.code == 0, str(res)
    shutil.rmtree(home, ignore_errors=True)
    return Media(root, portrait, wav, talking, keys_dir, weights_dir, mpl, _consent_db(root, portrait))


def _consent_db(root: Path, portrait: Path) -> Path:
    """The shipped policies release a person's video only against their consent record: one for the portrait."""
    from gate import consent
    from gate.database import Database

    evidence = root / "consent-evidence.txt"
    evidence.write_text("Signed consent of the test portrait's person (test data).\n", encoding="utf-8")
    path = root / "consent.sqlite"
    db = Database.open(str(path), create=True)
    consent.add(db, name="Test person", portrait=portrait, evidence=evidence, scope="tests", expires=None, actor="t")
    return path


def transcode(src: Path, dst: Path, fmt: str, vcodec: str, acodec: str | None, options: dict | None = None) -> Path:
    """Re-encode ``src`` into another container (for the truncation cases)."""
    import av

    from gate import media as gm

    clip = gm.read_video(src)
    with av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        vs = out.add_stream(vcodec, rate=int(clip.fps))
        vs.width, vs.height = clip.frames.shape[2], clip.frames.shape[1]
        vs.pix_fmt = "yuv420p"
        if vcodec in ("libvpx", "libvpx-vp9"):
            vs.bit_rate = 800_000
        a_s = out.add_stream(acodec, rate=48000 if acodec == "libopus" else clip.sample_rate) if acodec else None
        for i, f in enumerate(clip.frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        if a_s is not None:
            assert clip.audio is not None
            resampler = av.AudioResampler(format=a_s.codec_context.format.name, layout="mono", rate=a_s.rate)
            af = av.AudioFrame.from_ndarray(clip.audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
            af.sample_rate = clip.sample_rate
            for rf in resampler.resample(af):
                out.mux(a_s.encode(rf))
            for rf in resampler.resample(None):
                out.mux(a_s.encode(rf))
            out.mux(a_s.encode(None))
    return dst


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
