"""The review pages in Debian's Chromium (Playwright sync API; never ``playwright install``): log in, the queue, a
pending run whose video plays while the timeline cursor follows it, two approvals release it, a rejection
quarantines, a viewer sees no decision buttons, and Chromium can decode the gate's H.264. Screenshots of the queue
and the run page go to ``$HALLO3_GATE_TEST_ARTIFACTS`` (else the test's tmp dir) and are named in the output.

One site (two pending runs) and one browser per module; uvicorn serves the app in a thread on 127.0.0.1, port 0.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gate import review
from review_app.app import create_app
from tests.review_app.conftest import PASSWORD, make_pending_run, make_site

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian package chromium)")
    import uvicorn

    site = make_site(tmp_path_factory.mktemp("browser"))
    runs = {"approve": make_pending_run(site, seed=11), "reject": make_pending_run(site, seed=12)}
    server = uvicorn.Server(uvicorn.Config(create_app(site.settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield site, runs, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(served):
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


def _login(browser, base: str, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/queue")
    return page


def _decide(page, decision: str, reason: str, comment: str) -> None:
    page.select_option("select[name=reason]", reason)
    page.fill("textarea[name=comment]", comment)
    page.click(f"#{decision}")
    page.wait_for_load_state("load")


def test_review_flow_in_chromium(served, browser, artifacts):
    site, runs, base = served
    run_id = runs["approve"]
    page = _login(browser, base, "ann")
    assert page.locator(f"a[href='/runs/{run_id}']").count() == 1
    queue_png = artifacts / "review-queue.png"
    page.screenshot(path=str(queue_png), full_page=True)
    print(f"screenshot: {queue_png}")

    page.click(f"a[href='/runs/{run_id}']")
    page.wait_for_selector("#video")
    assert page.evaluate("""document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E"')""") == (
        "probably"
    )
    page.wait_for_function("() => document.getElementById('video').readyState >= 2", timeout=15000)
    cursor_before = page.get_attribute("svg.tl .cursor", "x1")
    page.evaluate("document.getElementById('video').play()")
    page.wait_for_function("() => document.getElementById('video').currentTime > 1.0", timeout=15000)
    page.evaluate("document.getElementById('video').pause()")
    cursor_after = float(page.get_attribute("svg.tl .cursor", "x1"))
    assert cursor_after > float(cursor_before) + 100  # 1 s of 5 s is 200 of 1000 units
    # click-to-seek on a timeline, then one frame forward with →
    box = page.locator("svg.tl").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 2.5) < 0.1")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('frame-label').textContent.startsWith('frame 63 ')")
    run_png = artifacts / "review-run.png"
    page.screenshot(path=str(run_png), full_page=True)
    print(f"screenshot: {run_png}")

    _decide(page, "approve", "meets-policy", "lip sync and identity hold")
    assert page.locator("#state .decision").inner_text() == "PENDING"
    assert review.get_run(site.db, site.runs, run_id).state == "pending"
    page.close()

    second = _login(browser, base, "bob")
    second.goto(f"{base}/runs/{run_id}")
    _decide(second, "approve", "meets-policy", "agreed")
    assert second.locator("#state .decision").inner_text() == "RELEASED"
    assert (site.runs / "released" / run_id / "video.mp4").is_file()
    second.close()


def test_a_rejected_run_lands_in_quarantine(served, browser):
    site, runs, base = served
    run_id = runs["reject"]
    page = _login(browser, base, "rex")
    page.goto(f"{base}/runs/{run_id}")
    assert page.locator("#approve").count() == 0  # a reviewer rejects, never approves
    _decide(page, "reject", "lip-sync", "mouth lags the speech")
    assert page.locator("#state .decision").inner_text() == "QUARANTINED"
    assert (site.runs / "quarantine" / run_id / "video.mp4").is_file()
    page.close()


def test_a_viewer_sees_no_decision_buttons(served, browser):
    _site, runs, base = served
    page = _login(browser, base, "val")
    for run_id in runs.values():
        page.goto(f"{base}/runs/{run_id}")
        assert page.locator("#decision-form, #approve, #reject").count() == 0
    page.close()


def test_a_post_without_csrf_is_refused_in_the_browser(served, browser):
    _site, runs, base = served
    page = _login(browser, base, "ada")
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams({decision: 'reject',
        reason: 'other', comment: 'x'})})).status""",
        f"{base}/runs/{runs['approve']}/decision",
    )
    assert status == 403
    page.close()
