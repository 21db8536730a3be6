"""The review pages in Debian's Chromium (Playwright sync API; never ``playwright install``) on pending runs that the
REAL gate made (tests/gate/review_fixtures.py: the puppet positive control gated with the shipped offline-review
policy, 2 approvals, four eyes): log in, the queue, the run page whose video plays while the timeline cursor follows
it, click-to-seek and frame stepping, one approval leaves it pending and a second releases it (its directory moves
to ``released/``), a rejection quarantines, the submitter and a viewer get no approve button, a POST without the CSRF
token is refused, and Chromium decodes H.264. Screenshots of the queue and the run page go to
``$HALLO3_GATE_TEST_ARTIFACTS`` (else the test's tmp dir) and are named in the output.

The session's one real pending run is copied into two sites (runs directory + SQLite database each: the API and
service suites cover PostgreSQL), one to approve and one to reject — the same run id twice, at no extra gate run.
Each site is served by uvicorn in a thread on 127.0.0.1, port 0; one browser per module.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from gate import review
from gate.users import add_user
from review_app.app import create_app
from review_app.settings import Settings
from tests.gate.review_fixtures import PASSWORD, SUBMITTER, USERS, Source, copy_database, pending_source  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser
ROW_CELLS = "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))"


class Site:
    """A copy of the real pending run (runs directory and database) and the URL of a server serving it."""

    def __init__(self, source: Source, root: Path) -> None:
        self.runs = root / "runs"
        shutil.copytree(source.out_dir, self.runs, symlinks=True)
        self.db = copy_database(source.ledger, str(root / "gate.sqlite"))
        for name, role in USERS.items():
            add_user(self.db, name, role, PASSWORD, actor="fixture")
        self.run_id = source.run_id
        self.settings = Settings(runs_dir=self.runs, db=self.db.locator)
        self.base = ""

    def state(self) -> str:
        return review.get_run(self.db, self.runs, self.run_id).state


def _serve(site: Site):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(site.settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    site.base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    return server, thread


@pytest.fixture(scope="module")
def sites(pending_source, tmp_path_factory):  # noqa: F811
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian package chromium)")
    made = {k: Site(pending_source, tmp_path_factory.mktemp(f"browser-{k}")) for k in ("approve", "reject")}
    served = [_serve(s) for s in made.values()]
    yield made
    for server, thread in served:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(sites):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield b
        b.close()


@pytest.fixture()
def artifacts(tmp_path) -> Path:
    where = os.environ.get("HALLO3_GATE_TEST_ARTIFACTS")
    d = Path(where) if where else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


def _login(browser, site: Site, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site.base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.base}/queue")
    return page


def _decide(page, decision: str, reason: str, comment: str) -> None:
    page.select_option("select[name=reason]", reason)
    page.fill("textarea[name=comment]", comment)
    with page.expect_navigation():
        page.click(f"#{decision}")


def _cursor_x(page) -> float:
    xs = {float(x) for x in page.eval_on_selector_all("svg.tl .cursor", "els => els.map(e => e.getAttribute('x1'))")}
    assert len(xs) == 1, f"the timelines' cursors disagree: {xs}"
    return xs.pop()


def _video_time(page) -> float:
    return page.evaluate("document.getElementById('video').currentTime")


def test_a_viewer_sees_no_decision_buttons(sites, browser):
    site = sites["approve"]  # before the approvals: the run is pending
    page = _login(browser, site, "vic")
    page.goto(f"{site.base}/runs/{site.run_id}")
    assert page.locator("#video").count() == 1  # the viewer reads the run ...
    assert page.locator("#decision-form, #approve, #reject").count() == 0  # ... and cannot decide
    page.close()


def test_a_post_without_csrf_is_refused_in_the_browser(sites, browser):
    site = sites["approve"]
    page = _login(browser, site, "ada")
    assert site.state() == "pending"
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams({decision: 'reject',
        reason: 'other', comment: 'x'})})).status""",
        f"{site.base}/runs/{site.run_id}/decision",
    )
    assert status == 403
    assert site.state() == "pending"  # nothing was decided
    page.close()


def _shows_the_real_record_plainly(page, site: Site) -> None:
    """The run page's reading of the offline-review record: rules as the policy states them, the watermark's decoded
    subset spread over the clip (not packed into its first frames) and said to be approximate."""
    record = json.loads((site.runs / "pending" / site.run_id / "record.json").read_text())
    rule = {r[0]: r[1] for r in page.eval_on_selector_all("#checks tbody tr", ROW_CELLS)}
    assert rule["avsync_offset"] == "|avsync_offset| <= 3"  # the policy's abs_max bound
    assert rule["min_width"] == "width >= 256"
    says = {r[0]: r[6] for r in page.eval_on_selector_all("#checks tbody tr", ROW_CELLS)}
    assert 'min = "backend"' in says["identity_mean"]  # where the identity threshold comes from
    frames, wm = record["output"]["frames"], record["watermark"]
    assert wm["frames_decoded"] < frames  # the decoder reads a subset: this is the case the page must not misplace
    caption = page.locator("#tl-watermark figcaption").inner_text()
    assert f"{wm['frames_decoded']} of {frames} frames decoded" in caption and "does not say which" in caption
    last_x = float(page.get_attribute("#tl-watermark path.series", "d").split()[-1][1:].split(",")[0])
    assert last_x > 1000 * (frames - frames / wm["frames_decoded"] - 1) / frames  # the last sample near the clip's end
    assert f"{frames} of {frames} frames measured" in page.locator("#tl-identity_mean figcaption").inner_text()


def test_two_approvals_release_a_real_pending_run(sites, browser, artifacts):
    site = sites["approve"]
    page = _login(browser, site, "ana")
    link = page.locator(f"a[href='/runs/{site.run_id}']")
    assert link.count() == 1
    queue_png = artifacts / "review-queue.png"
    page.screenshot(path=str(queue_png), full_page=True)
    print(f"screenshot: {queue_png}")

    link.click()
    page.wait_for_selector("#video")
    assert page.evaluate("""document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E"')""") == (
        "probably"
    )
    fps = float(page.get_attribute("#video", "data-fps"))
    frames = int(page.get_attribute("#video", "data-frames"))
    assert fps > 0 and frames > 10, (fps, frames)  # the gate's record states both
    assert page.locator("svg.tl").count() >= 2  # the real run's per-frame series (identity, watermark, ...)
    page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=20000)
    assert _cursor_x(page) == 0.0
    page.evaluate("document.getElementById('video').play()")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0.8", timeout=20000)
    page.evaluate("document.getElementById('video').pause()")
    page.wait_for_function("() => document.getElementById('video').paused")
    played = _video_time(page)
    # the cursor sits where the video is: x = time * fps / frames of 1000 units, within one frame (draws lag a frame)
    assert abs(_cursor_x(page) - played * fps / frames * 1000) <= 1000 / frames + 0.01

    # click-to-seek: the middle of a timeline is frame frames // 2, shown at its centre time
    box = page.locator("svg.tl").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    middle = frames // 2
    page.wait_for_function(
        f"() => Math.abs(document.getElementById('video').currentTime - {(middle + 0.5) / fps}) < 1e-3"
    )
    # frame stepping: → one frame on, ← two frames back
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"() => document.getElementById('frame-label').textContent.startsWith('frame {middle + 1} ')"
    )
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        f"() => document.getElementById('frame-label').textContent.startsWith('frame {middle - 1} ')"
    )
    assert abs(_video_time(page) - (middle - 0.5) / fps) < 1e-3
    _shows_the_real_record_plainly(page, site)
    run_png = artifacts / "review-run.png"
    page.screenshot(path=str(run_png), full_page=True)
    print(f"screenshot: {run_png}")

    _decide(page, "approve", "meets-policy", "lip sync and identity hold")
    assert page.locator("#state .decision").inner_text() == "PENDING"
    assert page.locator("#approve").count() == 0  # one person counts once
    assert site.state() == "pending"
    assert (site.runs / "pending" / site.run_id / "video.mp4").is_file()
    page.close()

    second = _login(browser, site, "ben")
    second.goto(f"{site.base}/runs/{site.run_id}")
    _decide(second, "approve", "meets-policy", "agreed")
    assert second.locator("#state .decision").inner_text() == "RELEASED"
    assert site.state() == "released"
    assert (site.runs / "released" / site.run_id / "video.mp4").is_file()
    assert not (site.runs / "pending" / site.run_id).exists()
    second.close()


def test_a_rejected_real_run_lands_in_quarantine(sites, browser):
    site = sites["reject"]
    page = _login(browser, site, SUBMITTER)
    page.goto(f"{site.base}/runs/{site.run_id}")
    assert page.locator("#approve").count() == 0  # four eyes: the submitter (an approver) may not approve
    page.close()
    page = _login(browser, site, "rita")
    page.goto(f"{site.base}/runs/{site.run_id}")
    assert page.locator("#approve").count() == 0  # a reviewer rejects, never approves
    # a comment pinned to the frame on screen (review.js fills it), then its "frame N" link seeks back there
    fps = float(page.get_attribute("#video", "data-fps"))
    page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    page.evaluate(f"v => {{ v.pause(); v.currentTime = 17.5 / {fps}; }}", page.query_selector("#video"))
    page.wait_for_function("() => document.getElementById('comment-frame').value === '17'")
    page.fill("#comment-form textarea[name=comment]", "the lips close late here")
    with page.expect_navigation():
        page.click("#comment-submit")
    comments = [e for e in review.get_run(site.db, site.runs, site.run_id).events if e["kind"] == "comment"]
    assert [(c["actor"], c["frame"], c["comment"]) for c in comments] == [("rita", 17, "the lips close late here")]
    page.evaluate("v => { v.pause(); v.currentTime = 0; }", page.query_selector("#video"))
    page.click("a.seek[data-frame='17']")
    page.wait_for_function(f"() => Math.abs(document.getElementById('video').currentTime - 17.5 / {fps}) < 1e-3")
    _decide(page, "reject", "lip-sync", "mouth lags the speech")
    assert page.locator("#state .decision").inner_text() == "QUARANTINED"
    assert site.state() == "quarantined"
    assert (site.runs / "quarantine" / site.run_id / "video.mp4").is_file()
    assert not (site.runs / "pending" / site.run_id).exists()
    page.close()
