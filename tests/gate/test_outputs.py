"""Outputs are written only to regular files, atomically, and never leave a temporary file behind.

``reports.atomic`` (used by every writer) and ``hallo3-gate stamp``: a directory, FIFO, device, socket or symbolic
link at the output path is refused (exit 2) and left exactly as it was; an unwritable directory or a full disk is
exit 74 with one line naming the path and the OS error; no ``.part`` or temporary file survives any failure. A full
disk is made three ways: a tiny tmpfs mounted inside the test (real ENOSPC; needs root, skipped otherwise), a file
size limit (RLIMIT_FSIZE: the kernel fails the write with EFBIG, any user), and an injected ENOSPC from fsync.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate import media
from gate.cli import main
from provenance.keys import ENV_SIGN_CHAIN, ENV_SIGN_KEY, init_dev_keys
from reports import atomic
from reports.errors import ExitCode, OutputError, UsageError
from tests.filesystems import mounted_tmpfs
from tests.wav import write_wav

ROOT = Path(__file__).resolve().parents[2]
FRAMES, SIZE, FPS, RATE = 48, 256, 25.0, 16000


# --- helpers ---------------------------------------------------------------------------------------------------------


def _snapshot(directory: Path) -> dict[str, tuple]:
    """Every entry under ``directory``: its type, and its bytes / link target / device number."""
    seen: dict[str, tuple] = {}
    for p in sorted(directory.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            seen[str(p.relative_to(directory))] = ("file", p.read_bytes())
        elif stat.S_ISLNK(st.st_mode):
            seen[str(p.relative_to(directory))] = ("link", os.readlink(p))
        else:
            seen[str(p.relative_to(directory))] = (stat.S_IFMT(st.st_mode), st.st_rdev)
    return seen


def _specials(tmp: Path) -> dict[str, tuple[Path, str, type]]:
    """Things that are not regular files, each with the word the refusal must use and the error (the README: 74 for
    an output that is not a regular file; 2 for a path that cannot name a file at all)."""
    (tmp / "a_dir").mkdir()
    (tmp / "a_dir" / "keep.txt").write_text("the user's")
    os.mkfifo(tmp / "a_fifo")
    (tmp / "target.txt").write_text("the user's file")
    os.symlink(tmp / "target.txt", tmp / "a_link")
    os.symlink(tmp / "nowhere", tmp / "a_dangling_link")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "a_socket"))
    sock.close()
    cases = {
        "a_dir": (tmp / "a_dir", "not a directory", OutputError),
        "a_fifo": (tmp / "a_fifo", "FIFO", OutputError),
        "a_link": (tmp / "a_link", "symbolic link", OutputError),
        "a_dangling_link": (tmp / "a_dangling_link", "symbolic link", OutputError),
        "a_socket": (tmp / "a_socket", "socket", OutputError),
        "under_a_file": (tmp / "target.txt" / "x.mp4", "parent must be a directory", UsageError),
    }
    if os.geteuid() == 0:  # a device node of our own (the numbers of /dev/null): never a system device
        os.mknod(tmp / "a_device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        cases["a_device"] = (tmp / "a_device", "character device", OutputError)
    return cases


@contextlib.contextmanager
def _small_fs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mountpoint`` for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (the RLIMIT_FSIZE and injected-ENOSPC tests run without it)")
    with mounted_tmpfs(mountpoint, f"size={size}"):
        yield mountpoint


@contextlib.contextmanager
def _read_only_dir(path: Path) -> Iterator[Path]:
    """A directory nobody can write: a read-only tmpfs as root (root ignores permissions), else mode 0555."""
    if os.geteuid() == 0:
        with _small_fs(path, "64k"):
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
            yield path
    else:
        path.mkdir()
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


# --- reports.atomic ------------------------------------------------------------------------------------------------


def test_every_non_regular_target_is_refused_and_left_as_it_was(tmp_path) -> None:
    cases = _specials(tmp_path)
    before = _snapshot(tmp_path)
    for name, (target, word, error) in cases.items():
        for write in (lambda t: atomic.write_bytes_atomic(t, b"data"), atomic.check_output_target):
            with pytest.raises(error, match=word) as err:
                write(target)
            assert str(err.value).startswith(f"{target}: "), name
    assert _snapshot(tmp_path) == before  # nothing replaced, nothing followed, no temporary file


def test_a_regular_file_is_replaced_atomically(tmp_path) -> None:
    target = tmp_path / "out" / "report.txt"
    atomic.write_text_atomic(target, "first")
    atomic.write_text_atomic(target, "second")
    assert target.read_text() == "second" and sorted(p.name for p in target.parent.iterdir()) == ["report.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~atomic._umask()


def test_a_failing_writer_leaves_no_temporary_file_and_the_old_output(tmp_path) -> None:
    target = tmp_path / "video.mp4"
    target.write_bytes(b"the previous output")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer died")
    with pytest.raises(KeyboardInterrupt), atomic.atomic_path(target) as tmp:
        raise KeyboardInterrupt
    assert target.read_bytes() == b"the previous output" and [p.name for p in tmp_path.iterdir()] == ["video.mp4"]


def test_a_target_that_turns_into_a_fifo_while_written_is_not_replaced(tmp_path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="FIFO"), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        os.mkfifo(target)  # someone puts a FIFO there after the first check
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_injected_enospc_is_an_output_error_with_nothing_left(tmp_path, monkeypatch) -> None:
    target = tmp_path / "record.json"
    target.write_text("{}")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"record\.json: output must be written completely \(got No space") as err:
        atomic.write_text_atomic(target, '{"a": 1}')
    assert err.value.exit_code == ExitCode.IO == 74
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_unwritable_directory_is_exit_74_before_any_work(tmp_path) -> None:
    with _read_only_dir(tmp_path / "ro") as ro:
        for target in (ro / "out.mp4", ro / "new" / "deeper" / "out.mp4"):
            with pytest.raises(OutputError, match=r"output directory must be writable \(got .*(read-only|denied)"):
                atomic.check_output_target(target)
            with pytest.raises(OutputError):
                atomic.write_bytes_atomic(target, b"x")
        assert list(ro.iterdir()) == []


def _noise(n: int = 16, side: int = 128) -> np.ndarray:
    """Frames that do not compress: an encoder writes about as many bytes as they hold."""
    return np.random.default_rng(7).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _talking_clip() -> np.ndarray:
    """A slow pan over a real photograph (scikit-image's astronaut): 48 frames carry the whole watermark twice."""
    from skimage import data

    face = np.asarray(Image.fromarray(data.astronaut()).resize((SIZE + 32, SIZE + 32)))
    return np.stack([face[(t // 2) % 16 :][:SIZE, t % 16 :][:, :SIZE] for t in range(FRAMES)])


def test_real_full_disk_mid_encode_leaves_nothing(tmp_path) -> None:
    with _small_fs(tmp_path / "small", "64k") as small:
        with pytest.raises(OutputError, match=r"clip\.mp4: output must be written completely \(got No space left"):
            media.write_mp4(small / "clip.mp4", _noise(), FPS)
        with pytest.raises(OutputError, match="No space left"):
            atomic.write_bytes_atomic(small / "blob.bin", bytes(200_000))
        assert list(small.iterdir()) == []


_FSIZE_CHILD = """
import resource, signal, sys
import numpy as np
from gate import media
from reports.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
frames = np.random.default_rng(0).integers(0, 256, (16, 128, 128, 3), dtype=np.uint8)
try:
    media.write_mp4(sys.argv[1], frames, 25)
except OutputError as exc:
    print("OutputError", exc.exit_code, exc)
"""


def test_a_write_the_kernel_refuses_mid_encode_is_exit_74_for_any_user(tmp_path) -> None:
    """RLIMIT_FSIZE makes the kernel fail the encoder's write past 20 kB with EFBIG (no root, no mount needed)."""
    out = tmp_path / "o" / "clip.mp4"
    done = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.stdout.startswith(f"OutputError 74 {out}: output must be written completely (got File too large)"), (
        done.stdout + done.stderr
    )
    assert list(out.parent.iterdir()) == []


# --- hallo3-gate stamp -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stamp_inputs(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("outputs")
    frames = _talking_clip()
    audio = (0.2 * np.sin(np.arange(int(RATE * FRAMES / FPS)) * 0.05)).astype(np.float32)
    portrait = work / "portrait.png"
    Image.fromarray(frames[0]).save(portrait)
    wav = write_wav(work / "speech.wav", audio, RATE)
    return {
        "video": media.write_mp4(work / "in.mp4", frames, FPS, audio, RATE),
        "portrait": portrait,
        "wav": wav,
        "keys": init_dev_keys(work / "keys").directory,
    }


@pytest.fixture
def stamp_cli(monkeypatch, stamp_inputs, tmp_path, capsys):
    for var in (ENV_SIGN_CHAIN, ENV_SIGN_KEY, "HALLO3_GATE_TRUST_ANCHORS", "HALLO3_GATE_TSA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HALLO3_GATE_KEYS_DIR", str(stamp_inputs["keys"]))
    monkeypatch.setenv("HALLO3_GATE_LEDGER", str(tmp_path / "none.sqlite"))

    def run(out: Path, video: Path | None = None) -> tuple[int, str]:
        capsys.readouterr()
        args = ["stamp", str(video or stamp_inputs["video"]), str(out), "--portrait", str(stamp_inputs["portrait"])]
        with contextlib.redirect_stdout(io.StringIO()):
            code = main([*args, "--audio", str(stamp_inputs["wav"])])
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if ln.startswith("hallo3-gate: error:")]
        assert "Traceback" not in err and len(errors) == (code != 0), err
        return code, errors[0] if errors else ""

    return run


def test_stamp_refuses_every_non_regular_output_and_leaves_it_alone(stamp_cli, tmp_path) -> None:
    """Finding 2 of issue 8: `stamp IN OUT` with OUT a FIFO or a device replaced it with an MP4; to a directory it
    crashed. Now each is exit 74 (2 for a path under a file) naming OUT, before any decoding; OUT is untouched."""
    cases = _specials(tmp_path)
    before = _snapshot(tmp_path)
    for name, (target, word, error) in cases.items():
        code, line = stamp_cli(target)
        assert code == error.exit_code and str(target) in line and word in line, (name, line)
    assert _snapshot(tmp_path) == before


def test_stamp_refuses_to_overwrite_its_input(stamp_cli, stamp_inputs, tmp_path) -> None:
    video = tmp_path / "mine.mp4"
    video.write_bytes(stamp_inputs["video"].read_bytes())
    for out in (video, tmp_path / "." / "mine.mp4"):
        code, line = stamp_cli(out, video)
        assert code == ExitCode.USAGE and "must not be the IN file" in line
    assert video.read_bytes() == stamp_inputs["video"].read_bytes()


def test_stamp_to_a_read_only_directory_is_exit_74(stamp_cli, tmp_path) -> None:
    with _read_only_dir(tmp_path / "ro") as ro:
        code, line = stamp_cli(ro / "out.mp4")
        assert code == ExitCode.IO and "out.mp4" in line and "writable" in line
        assert list(ro.iterdir()) == []


def test_stamp_on_a_full_disk_is_exit_74_with_nothing_left(stamp_cli, stamp_inputs, tmp_path) -> None:
    """Two real ENOSPC points: a disk too small for the encode, and one that holds the encode but not the signed copy
    (c2pa writes the signed file beside it). Each: exit 74, one line naming OUT, the disk as empty as before."""
    good = tmp_path / "good.mp4"
    assert stamp_cli(good) == (0, "")
    size_kib = good.stat().st_size // 1024
    for size in ("32k", f"{size_kib * 3 // 2}k"):
        with _small_fs(tmp_path / f"fs{size}", size) as small:
            code, line = stamp_cli(small / "out.mp4")
            assert code == ExitCode.IO and f"{small / 'out.mp4'}: output must be written completely" in line, line
            assert "No space left on device" in line and list(small.iterdir()) == []
