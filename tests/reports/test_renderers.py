"""Every renderer of one run: JSON, JUnit XML, Markdown, self-contained HTML (opened in Chromium), PDF."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reports.errors import InputError
from reports.html import render_html
from reports.json_report import read_json
from reports.junit import render_junit
from reports.markdown import STEP_SUMMARY_ENV, append_step_summary, render_markdown
from reports.schema import GateRecord
from reports.write import REPORT_FILES, write_reports

HOSTILE = 'evil <img src="http://example.com/x.png"> & "quotes" \x01 | pipe'


@pytest.fixture(scope="module")
def written(make_record, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """record.json, report.html, report.pdf, junit.xml, summary.md for a released and a quarantined run."""
    out = {}
    for variant in ("released", "unmeasured"):
        out[variant] = write_reports(make_record(variant), tmp_path_factory.mktemp(variant), step_summary=False)
    return out


def test_write_reports_writes_every_file_atomically(written):
    for paths in written.values():
        assert {k: p.name for k, p in paths.items()} == REPORT_FILES
        folder = paths["json"].parent
        assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES.values()), "temporary files left behind"
        assert all(p.stat().st_size > 0 for p in paths.values())


def test_record_json_reads_back_identical(written, make_record):
    assert read_json(written["released"]["json"]) == make_record("released")
    assert json.loads(written["unmeasured"]["json"].read_text())["decision"] == "quarantined"


def test_read_json_names_the_file_and_the_problem(tmp_path, record_dict):
    bad = tmp_path / "record.json"
    data = record_dict("released")
    data["checks"][0]["outcome"] = "maybe"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"record.json: must be a valid hallo3-gate audit record.*checks\.0\.outcome"):
        read_json(bad)
    with pytest.raises(InputError, match="readable"):
        read_json(tmp_path / "missing.json")


# --- JUnit -----------------------------------------------------------------------------------------------------------


def _cases(xml: bytes) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    return {case.get("name"): case for case in root.iter("testcase")}


def test_junit_maps_outcomes_to_failure_error_or_nothing(make_record):
    for variant, expect in (
        ("released", {}),
        ("failed", {"sync_c_min": "failure"}),
        ("unmeasured", {"identity_mean_min": "error", "identity_min_min": "error"}),
    ):
        record = make_record(variant)
        cases = _cases(render_junit(record))
        assert list(cases) == [c.name for c in record.checks]
        for name, case in cases.items():
            tags = {child.tag for child in case} & {"failure", "error", "skipped"}
            assert tags == ({expect[name]} if name in expect else set()), (variant, name, tags)
        suite = ET.fromstring(render_junit(record)).find("testsuite")
        assert int(suite.get("failures")) == sum(v == "failure" for v in expect.values())
        assert int(suite.get("errors")) == sum(v == "error" for v in expect.values())
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["decision"] == record.decision and props["watermark_payload"] == record.watermark.payload


def test_junit_escapes_markup_and_drops_illegal_characters(record_dict):
    data = record_dict("failed")
    data["checks"][0]["message"] = HOSTILE
    data["checks"][0]["name"] = "sync<c>&min"
    record = GateRecord.model_validate(data)
    xml = render_junit(record)
    case = _cases(xml)["sync<c>&min"]
    failure = case.find("failure")
    assert 'evil <img src="http://example.com/x.png"> & "quotes"  | pipe' in failure.text
    assert b"\x01" not in xml
    assert failure.get("type") == "required"


# --- Markdown --------------------------------------------------------------------------------------------------------


def test_markdown_summary_and_github_step_summary(make_record, tmp_path, monkeypatch, record_dict):
    data = record_dict("failed")
    data["reasons"].append(HOSTILE)
    record = GateRecord.model_validate(data)
    text = render_markdown(record)
    assert text.startswith("## ⛔ hallo3-gate: QUARANTINED (exit code 1)")
    assert "| sync_c_min | sync_c &gt;= 3 |" in text and "❌ fail" in text
    assert "<img" not in text and "\\| pipe" in text and "\x01" not in text

    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(summary))
    assert append_step_summary(make_record("released")) == summary
    assert append_step_summary(record) == summary
    content = summary.read_text()
    assert content.startswith("# earlier step\n")
    assert content.index("RELEASED") < content.index("QUARANTINED")
    monkeypatch.delenv(STEP_SUMMARY_ENV)
    assert append_step_summary(record) is None


# --- HTML ------------------------------------------------------------------------------------------------------------


def test_html_is_self_contained_and_escapes_record_text(record_dict, external_references):
    data = record_dict("failed")
    data["reasons"].append(HOSTILE)
    data["inputs"]["prompt"] = HOSTILE
    html = render_html(GateRecord.model_validate(data))
    assert external_references(html) == []
    assert not re.search(r"""<(?:link|script|iframe|object|embed)\b""", html, re.IGNORECASE)
    assert "default-src 'none'" in html  # the browser refuses any request even if a URL slipped in
    assert "&lt;img src=&#34;http://example.com/x.png&#34;&gt;" in html
    assert html.count("<img ") == 3 + 4  # three per-frame plots + four keyframes, all data: URIs
    assert "QUARANTINED" in html and "sync_c_min" in html and "urn:c2pa:" in html


def test_external_reference_detector_can_fail(external_references):
    html = (
        '<link rel="stylesheet" href="//cdn.example/a.css"><img src="https://cdn.example/x.png">'
        '<style>a{background:url(http://x/y)}</style><p>src="http://text.only"</p><img src="data:image/png;base64,AA">'
    )
    assert external_references(html) == ["//cdn.example/a.css", "https://cdn.example/x.png", "http://x/y"]


def _no_network_prefix() -> list[str]:
    """Run under a fresh network namespace (loopback only) when we may; Chromium's own rules close the rest."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net"]
    return []


def chromium_screenshot(html_path: Path, png: Path, tmp: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian package chromium is not installed: cannot open the HTML report in a browser")
    cmd = [
        *_no_network_prefix(),
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        f"--screenshot={png}",
        "--window-size=1280,2400",
        html_path.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]


def _colour_share(region: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> float:
    return float(np.all(np.abs(region.astype(int) - rgb) <= tol, axis=-1).mean())


def test_html_opens_in_chromium_and_shows_the_decision(written, tmp_path):
    """One browser run (the released report: green banner); the PDF test checks the red quarantine banner."""
    png = tmp_path / "released.png"
    chromium_screenshot(written["released"]["html"], png, tmp_path)
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 20, "screenshot is blank"
    # the decision banner is the first thing on the page, in the decision's colour
    assert _colour_share(pixels[40:110, 80:1200], (0x1A, 0x7F, 0x37)) > 0.5
    # the plot area is drawn (many distinct colours, not an empty box)
    assert len(np.unique(pixels[500:1400].reshape(-1, 3), axis=0)) > 200


# --- PDF -------------------------------------------------------------------------------------------------------------


def test_pdf_renders_to_non_blank_pages(written, tmp_path):
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.skip("poppler-utils (pdftoppm) is not installed: cannot rasterise the PDF report")
    pdf = written["unmeasured"]["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    subprocess.run([pdftoppm, "-png", "-r", "50", str(pdf), str(tmp_path / "page")], check=True, timeout=60)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"), dtype=np.float64)
        assert pixels.std() > 5, f"{page.name} is blank"
    first = np.asarray(Image.open(pages[0]).convert("RGB"))
    assert _colour_share(first, (0xCF, 0x22, 0x2E), tol=16) > 0.01, "no red QUARANTINED banner on page 1"
    pdftotext = shutil.which("pdftotext")
    if pdftotext:
        text = subprocess.run([pdftotext, "-l", "1", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "QUARANTINED" in text and "identity_mean_min" in text


def test_a_bare_record_renders_everywhere(external_references):
    """Review mode, provenance failed before anything was measured: no checks, series, keyframes or ledger."""
    record = GateRecord.model_validate(
        {
            "schema_version": "1.2",  # before the compliance matrix: a 1.3 record always carries one
            "run_id": "bare-1",
            "created_at": "2026-11-23T23:50:00Z",
            "mode": "review",
            "decision": "quarantined",
            "exit_code": 5,
            "reasons": ["provenance: signing key does not match the certificate"],
            "inputs": {"video": {"path": "in.mp4", "sha256": "0" * 64, "size": 10, "media_type": "video/mp4"}},
            "output": {
                "path": "quarantine/bare-1/video.mp4",
                "sha256": "1" * 64,
                "size": 10,
                "media_type": "video/mp4",
            },
            "generator": {"backend": "external", "model_name": "unknown (review mode)"},
            "watermark": {"method": "rivaGan-32", "payload": "00ff00ff", "reason": "not decoded: signing failed"},
            "provenance": {"manifest_state": "NotChecked", "reason": "signing failed"},
            "policy": {"name": "default", "sha256": "2" * 64, "content": {}},
            "environment": {"python": "3.11", "hallo3_gate": "0.1.0"},
        }
    )
    html = render_html(record)
    assert (
        "QUARANTINED" in html
        and "applied no checks" in html
        and "rendered before the run was appended to the ledger" in html
    )
    assert external_references(html) == []
    root = ET.fromstring(render_junit(record))
    assert root.get("tests") == "0" and root.find("testsuite").find("testcase") is None
    assert "signing key does not match" in render_markdown(record)


def test_plots_draw_only_bounds_on_the_metric_itself(record_dict):
    from reports.plots import policy_bounds

    data = record_dict("released")
    sync_c = next(m for m in data["measurements"] if m["name"] == "sync_c")
    data["checks"].append(
        {"name": "regression.sync_c", "metric": "sync_c", "op": "<=", "threshold": 0.5, "value": 0.1,
         "outcome": "pass", "required": True, "message": "worse by 0.1 (allowed 0.5)"}
    )  # fmt: skip
    record = GateRecord.model_validate(data)
    assert policy_bounds(record, record.measurement("sync_c")) == [(">=", 3.0)]
    assert sync_c["value"] == record.measurement("sync_c").value


def test_html_shows_how_each_weight_file_was_checked(record_dict):
    data = record_dict("passed")
    pinned = data["weights"][0]
    data["weights"] = [
        {**pinned, "pinned_sha256": pinned["sha256"], "status": "verified", "verified": True},
        {**pinned, "name": "own_checkpoint", "source": None, "status": "unpinned", "verified": False},
    ]
    html = render_html(GateRecord.model_validate(data))
    rows = re.findall(r"<tr><td class=\"name\">(\w+)</td>.*?</tr>", html)
    assert rows == ["syncnet_v2", "own_checkpoint"]
    verified_row = html[html.index('<td class="name">syncnet_v2') :].split("</tr>")[0]
    unpinned_row = html[html.index('<td class="name">own_checkpoint') :].split("</tr>")[0]
    assert "equals the registry pin" in verified_row and "unpinned" not in verified_row
    assert "<strong>unpinned</strong>" in unpinned_row and "equals the registry pin" not in unpinned_row


# --- the compliance matrix (schema 1.3) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compliant(record_dict) -> GateRecord:
    """A released 1.3 record whose policy requires three rows (one of them, the time-stamp, not met)."""
    data = record_dict("released", compliance=True)
    data["policy"]["content"]["compliance"] = {"require": ["eu-ai-act-50-2", "consent", "rfc3161-timestamp"]}
    return GateRecord.model_validate(data)


def test_html_shows_the_compliance_table_and_the_disclosure_consent_and_label(compliant, external_references):
    html = render_html(compliant)
    assert external_references(html) == []
    table = html[html.index('<table id="compliance-matrix"') : html.index("</table>", html.index("compliance-matrix"))]
    ids = re.findall(r'<tr class="cr-(\w+)" id="compliance-([\w-]+)">', table)
    assert [i for _, i in ids] == [row.id for row in compliant.compliance]
    assert [s for s, _ in ids] == [row.status for row in compliant.compliance]
    assert table.count('<span class="req">required</span>') == 3
    assert '<span class="badge b-not_met">not met</span>' in table
    assert '<span class="badge b-not_checked">not checked</span>' in table
    assert '<span class="badge b-not_applicable">not applicable</span>' in table
    assert "Example &lt;Studios&gt; &amp; Co" in table and "&lt;b&gt;possible&lt;/b&gt;" in table
    assert "compliance 11 met, 2 not met, 1 not applicable, 1 not checked" in " ".join(html.split())
    assert 'id="disclosure"' in html and "urn:uuid:0b0e3c52-5d0c-4c1e-9d39-7d0f3a2b1c11" in html
    assert 'id="consent"' in html and "cns-0123456789ab" in html
    assert 'id="label"' in html and "125 of 125 frames" in html


def test_records_without_a_matrix_render_no_compliance_section(make_record):
    html = render_html(make_record("released"))
    assert 'id="compliance' not in html and 'id="disclosure"' not in html and "compliance 0" not in html
    assert "Compliance" not in render_markdown(make_record("released"))
    assert not [
        c
        for c in ET.fromstring(render_junit(make_record("released"))).iter("testcase")
        if c.get("classname") == "compliance"
    ]


def test_junit_has_one_compliance_case_per_row(compliant):
    root = ET.fromstring(render_junit(compliant))
    suite = root.find("testsuite")
    rows = [c for c in suite.iter("testcase") if c.get("classname") == "compliance"]
    assert [c.get("name") for c in rows] == [r.id for r in compliant.compliance]
    outcome = {c.get("name"): {ch.tag: ch.get("type") for ch in c if ch.tag != "system-out"} for c in rows}
    assert outcome["rfc3161-timestamp"] == {"failure": "required"}
    assert outcome["c2pa-soft-binding"] == {"skipped": None}  # not required by the policy: never red in CI
    soft = next(c for c in rows if c.get("name") == "c2pa-soft-binding").find("skipped").get("message")
    assert soft.startswith("not met (advisory: the policy does not require it): ")
    assert outcome["cn-art9-retention"] == {"skipped": None}
    assert outcome["cawg-identity"] == {} and outcome["consent"] == {}
    assert "status: not applicable" in next(c for c in rows if c.get("name") == "cawg-identity").find("system-out").text
    consent = next(c for c in rows if c.get("name") == "consent").find("system-out").text
    assert "met (required by the policy)" in consent and "evidence: consent cns-0123456789ab" in consent
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "20",
        "1",
        "0",
        "2",
    )
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("20", "1", "2")


def test_markdown_lists_each_row_with_its_reason(compliant):
    text = render_markdown(compliant)
    assert "**Compliance:** 11 met, 2 not met, 1 not applicable, 1 not checked" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("- ") and ":" in ln and ln[2] in "✅❌–"]
    assert len(lines) == len(compliant.compliance)
    assert "- ❌ rfc3161-timestamp: no time-stamping authority configured (\\$HALLO3_GATE_TSA_URL)" in lines
    assert "- – cn-art9-retention (not checked): no ledger to verify" in lines
    assert any(ln.startswith("- ✅ consent: consent cns-0123456789ab: matched") for ln in lines)


def test_pdf_prints_the_compliance_table_readably(compliant, tmp_path):
    from reports.pdf import html_to_pdf

    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("poppler-utils (pdftotext) is not installed: the PDF's text is not checked")
    pdf = html_to_pdf(render_html(compliant), tmp_path / "report.pdf")
    text = subprocess.run([pdftotext, "-l", "2", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "Compliance (15 requirements)" in flat
    for row in compliant.compliance:
        assert row.id in flat, row.id
    assert "not met" in flat and "not checked" in flat and "not applicable" in flat
