"""The public detection endpoint and page: upload limits enforced while streaming, nothing kept on disk, the upload
private while it exists, bad uploads named (never a 500, never the server's path), feedback stored.

The answers' content (basis, payload, run state, no personal data) on real gate outputs is tested in
tests/gate/test_detect.py (the service) and tests/review_app/test_api.py (through the API after real decisions)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gate import detect as detection
from gate import media
from gate.database import Database
from review_app.app import create_app
from review_app.settings import Settings

CAP = 64 * 1024


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """A real H.264 + AAC MP4 that no gate ever marked (a few KiB)."""
    d = tmp_path_factory.mktemp("detect-media")
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    return media.write_mp4(d / "clean.mp4", frames, 25.0, audio, 16000)


def _site(tmp_path: Path, cap: int = CAP) -> tuple[Settings, Path]:
    runs, uploads = tmp_path / "runs", tmp_path / "uploads"
    runs.mkdir()
    uploads.mkdir(mode=0o700)
    Database.open(str(tmp_path / "gate.sqlite"), create=True)
    return Settings(runs_dir=runs, db=str(tmp_path / "gate.sqlite"), upload_dir=uploads, max_upload_bytes=cap), uploads


@pytest.fixture()
def site(tmp_path):
    settings, uploads = _site(tmp_path)
    with TestClient(create_app(settings)) as client:
        yield client, uploads, settings


def _multipart(data: bytes, field: str = "file", boundary: str = "b0undary-h5") -> tuple[bytes, dict[str, str]]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="v.mp4"\r\n'
            f"Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_a_clean_video_gets_an_answer_and_nothing_is_kept(site, small_video):
    client, uploads, _ = site
    r = client.post("/api/v1/detect", files={"file": ("holiday.mp4", small_video.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["basis"] == [] and answer["generated_by_this_system"] is False and answer["run"] is None
    assert answer["watermark"]["detected"] is False and answer["manifest"]["present"] is False
    assert "holiday" not in r.text and str(uploads) not in r.text
    assert list(uploads.iterdir()) == []


def test_the_upload_is_private_while_it_is_examined(site, small_video, monkeypatch):
    client, uploads, _ = site
    seen = {}
    real = detection.detect

    def spy(path, *args, **kwargs):
        st = os.stat(path)
        seen.update(mode=stat.S_IMODE(st.st_mode), parent=Path(path).parent, size=st.st_size)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(detection, "detect", spy)
    r = client.post("/api/v1/detect", files={"file": ("v.mp4", small_video.read_bytes(), "video/mp4")})
    assert r.status_code == 200
    assert seen == {"mode": 0o600, "parent": uploads, "size": small_video.stat().st_size}
    assert list(uploads.iterdir()) == []


def test_without_an_upload_dir_a_fresh_private_directory_is_used_and_removed(tmp_path, small_video, monkeypatch):
    settings, _ = _site(tmp_path)
    settings = Settings(runs_dir=settings.runs_dir, db=settings.db, max_upload_bytes=CAP)
    seen = {}
    real = detection.detect

    def spy(path, *args, **kwargs):
        seen["dir"], seen["dir_mode"] = Path(path).parent, stat.S_IMODE(os.stat(Path(path).parent).st_mode)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(detection, "detect", spy)
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/detect", files={"file": ("v.mp4", small_video.read_bytes())}).status_code == 200
    assert seen["dir_mode"] == 0o700 and not seen["dir"].exists()


def test_over_the_cap_is_413_and_nothing_is_left(site):
    client, uploads, _ = site
    r = client.post("/api/v1/detect", files={"file": ("big.mp4", b"\0" * (CAP + 1), "video/mp4")})
    assert r.status_code == 413 and f"at most {CAP} bytes" in r.json()["detail"]
    assert list(uploads.iterdir()) == []


def test_a_body_without_content_length_is_counted_while_it_streams(site):
    client, uploads, _ = site
    body, headers = _multipart(b"\0" * (CAP + 1))

    def chunks():  # a generator body: sent without Content-Length
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    r = client.post("/api/v1/detect", content=chunks(), headers=headers)
    assert r.status_code == 413 and list(uploads.iterdir()) == []


def test_a_lying_content_length_is_not_trusted(site):
    client, uploads, _ = site
    body, headers = _multipart(b"\0" * (CAP + 1))
    r = client.post("/api/v1/detect", content=body, headers={**headers, "content-length": "100"})
    assert r.status_code == 413 and list(uploads.iterdir()) == []


def test_a_declared_length_over_the_cap_is_refused_before_reading(site):
    client, uploads, _ = site
    body, headers = _multipart(b"\0" * 10)
    r = client.post("/api/v1/detect", content=body, headers={**headers, "content-length": str(10 * CAP)})
    assert r.status_code == 413 and list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"just some text, not a video at all\n" * 40, "file: "),
        (b"", "file: an upload must be a video (got an empty file)"),
    ],
)
def test_not_a_video_is_422_naming_the_rule_never_the_servers_path(site, data, rule):
    client, uploads, _ = site
    r = client.post("/api/v1/detect", files={"file": ("notes.txt", data, "text/plain")})
    assert r.status_code == 422 and r.json()["detail"].startswith(rule), r.text
    assert str(uploads) not in r.text and ".upload-" not in r.text
    assert list(uploads.iterdir()) == []


def test_a_truncated_video_is_422(site, small_video):
    client, uploads, _ = site
    data = small_video.read_bytes()
    r = client.post("/api/v1/detect", files={"file": ("cut.mp4", data[: len(data) // 2], "video/mp4")})
    assert r.status_code == 422 and r.json()["detail"].startswith("file: ") and str(uploads) not in r.text
    assert list(uploads.iterdir()) == []


def test_not_multipart_or_no_file_field_is_refused(site):
    client, uploads, _ = site
    r = client.post("/api/v1/detect", content=b"\0" * 100, headers={"content-type": "video/mp4"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    body, headers = _multipart(b"\0" * 100, field="video")
    r = client.post("/api/v1/detect", content=body, headers=headers)
    assert r.status_code == 422 and "'file'" in r.json()["detail"]
    assert list(uploads.iterdir()) == []


# --- feedback --------------------------------------------------------------------------------------------------------


def _feedback_rows(settings: Settings) -> list[dict]:
    with Database.open(settings.db).reading() as tx:
        return tx.execute("SELECT verdict, payload_hex, comment FROM detect_feedback ORDER BY id")


def test_feedback_is_stored(site):
    client, _, settings = site
    r = client.post("/api/v1/detect/feedback", json={"verdict": "incorrect", "payload_hex": "00ff", "comment": "hm"})
    assert r.status_code == 201 and r.json()["stored"] is True
    r = client.post("/api/v1/detect/feedback", json={"verdict": "correct"})
    assert r.status_code == 201
    assert _feedback_rows(settings) == [
        {"verdict": "incorrect", "payload_hex": "00ff", "comment": "hm"},
        {"verdict": "correct", "payload_hex": None, "comment": ""},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "maybe"},
        {"verdict": "correct", "payload_hex": "zz"},
        {"verdict": "correct", "payload_hex": "ab" * 33},
        {"verdict": "correct", "comment": "x" * 2001},
        {"verdict": "correct", "name": "someone"},
        [],
    ],
)
def test_feedback_outside_its_rules_is_422_and_not_stored(site, body):
    client, _, settings = site
    r = client.post("/api/v1/detect/feedback", json=body)
    assert r.status_code == 422 and _feedback_rows(settings) == []


def test_feedback_body_is_capped_while_read(site):
    client, _, settings = site
    r = client.post("/api/v1/detect/feedback", content=b'{"verdict": "correct", "comment": "' + b"x" * 20000 + b'"}')
    assert r.status_code == 413 and _feedback_rows(settings) == []
    assert client.post("/api/v1/detect/feedback", content=b"{not json").status_code == 422


# --- the page --------------------------------------------------------------------------------------------------------


def test_the_page_uploads_shows_the_answer_and_takes_feedback(site, small_video):
    client, uploads, settings = site
    page = client.get("/detect")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text and 'name="file"' in page.text
    shown = client.post("/detect", files={"file": ("v.mp4", small_video.read_bytes(), "video/mp4")})
    assert shown.status_code == 200 and 'id="detect-result"' in shown.text
    assert "Generated by this system: no" in shown.text and list(uploads.iterdir()) == []
    refused = client.post("/detect", files={"file": ("v.mp4", b"<script>alert(1)</script>" * 10, "video/mp4")})
    assert refused.status_code == 422 and 'id="detect-error"' in refused.text and "<script>alert" not in refused.text
    thanks = client.post("/detect/feedback", data={"verdict": "unsure", "payload_hex": "", "comment": "<b>hi</b>"})
    assert thanks.status_code == 200 and 'id="feedback-thanks"' in thanks.text
    assert _feedback_rows(settings) == [{"verdict": "unsure", "payload_hex": None, "comment": "<b>hi</b>"}]
    bad = client.post("/detect/feedback", data={"verdict": "<i>nope</i>"})
    assert bad.status_code == 422 and "<i>nope" not in bad.text and len(_feedback_rows(settings)) == 1
