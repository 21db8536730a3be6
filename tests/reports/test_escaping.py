"""Hostile strings through every renderer, in every field a user controls: the output stays well-formed, gains no
element, link, emphasis or markup from the payload, and still shows the text.

Renderers: JSON, HTML (and the PDF made from it), Markdown (summary.md / $GITHUB_STEP_SUMMARY), JUnit XML, the console
(the verdict lines of a gate run and the `verify` tree), the comparison report (HTML, CSV). Each hostile document is
compared with the same document holding a plain string in the same fields: the element/token structure must be
identical, so anything the payload added would show as a difference.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from gate.cli import verdict_lines
from gate.verify_view import verify_tree
from provenance.c2pa import ManifestReport, ValidationCode
from provenance.verify import VerifyReport, WatermarkCheck
from reports.compare import build_comparison, load_runs, render_comparison_html
from reports.errors import InputError, exit_status, printable
from reports.html import render_html
from reports.json_report import write_json
from reports.junit import render_junit
from reports.markdown import md_code, md_text, render_markdown
from reports.pdf import html_to_pdf
from reports.schema import GateRecord

PAYLOADS = {
    "backtick-link": "o`[click me](https://example.org) **bold**`",
    "rich-markup": "o[/]x [bold]B[/bold] [link=https://example.org]L[/link] [/",
    "html": "<script>alert(1)</script><img src=x onerror=alert(2)> <a href='//e.org'>a</a> & &amp; \"q\" 's'",
    "cdata": "]]><![CDATA[x]]> <!-- c --> <?pi x?> &#0; &bogus;",
    "pipes-newlines": "a|b\nc\r\n| d\n\n# heading\n- item\n\n---\n> quote",
    "controls": "c0:" + "".join(chr(c) for c in range(32)) + "\x7f\x85\x9b" + ":end",
    "rtl": "video\u202egnp.exe \u2066iso\u2069 \u2028line\u2029para",
    "markdown": "_under_ *star* ~~strike~~ $x^2$ www.example.org https://e.org <https://e.org> ![i](x.png) [r]: /u",
    "long": "L" * 5000 + "`" * 7 + "]]>" * 50,
}
PLAIN = "plain text"

# A payload lands in each field behind a marker of letters and digits (no Markdown/XML meaning), so each field's
# text can be found in the output. (field, setter, renderers that show it)
Setter = Callable[[dict, str], None]


def _set(*keys: Any) -> Setter:
    def setter(data: dict, value: str) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return setter


def _append_reason(data: dict, value: str) -> None:
    data["reasons"].append(value)


def _failure(data: dict, value: str) -> None:
    data["provenance"]["failures"] = [value]


FIELDS: list[tuple[str, Setter, set[str]]] = [
    ("output path", _set("output", "path"), {"html", "markdown", "junit", "console"}),
    ("staging path", _set("output", "staging_path"), {"html"}),
    ("portrait path", _set("inputs", "portrait", "path"), {"html"}),
    ("audio path", _set("inputs", "audio", "path"), {"html"}),
    ("prompt", _set("inputs", "prompt"), {"html"}),
    ("reason", _append_reason, {"html", "markdown", "junit", "console"}),
    ("check name", _set("checks", 0, "name"), {"html", "markdown", "junit"}),
    ("check message", _set("checks", 0, "message"), {"html", "junit"}),
    ("check metric", _set("checks", 1, "metric"), {"html", "markdown", "junit"}),
    ("policy name", _set("policy", "name"), {"html", "markdown", "junit"}),
    ("policy path", _set("policy", "path"), {"html"}),
    ("model name", _set("generator", "model_name"), {"html", "markdown", "junit"}),
    ("backend", _set("generator", "backend"), {"html", "markdown", "junit"}),
    ("measurement reason", _set("measurements", 2, "reason"), {"html"}),
    ("manifest failure", _failure, {"html", "markdown"}),
    ("watermark note", _set("watermark", "reason"), {"html"}),
    ("signer", _set("provenance", "signer_subject"), {"html"}),
    ("compliance evidence", _set("compliance", 0, "evidence", 0), {"html", "junit"}),
    ("compliance reason", _set("compliance", 2, "reason"), {"html", "markdown", "junit"}),
    ("disclosure provider", _set("disclosure", "provider"), {"html"}),
    ("label text", _set("label", "text"), {"html"}),
    ("consent backend", _set("consent", "backend"), {"html"}),
]


def _marker(i: int) -> str:
    return f"Zq{i}qZ"


def _record(record_dict, payload: str) -> GateRecord:
    data = record_dict("failed", compliance=True)
    for i, (_, setter, _) in enumerate(FIELDS):
        setter(data, _marker(i) + payload)
    return GateRecord.model_validate(data)


def _shown(renderer: str) -> list[int]:
    return [i for i, (_, _, where) in enumerate(FIELDS) if renderer in where]


IDS = list(PAYLOADS)
PARAMS = [PAYLOADS[k] for k in IDS]


@pytest.fixture(scope="module")
def plain(record_dict) -> GateRecord:
    return _record(record_dict, PLAIN)


def _single_line(text: str) -> str:
    """What a one-line renderer keeps of a value: control characters dropped, whitespace runs as one space."""
    return " ".join(re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", "", text).split())


# --- JSON ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_json_round_trips_exactly(payload, record_dict, tmp_path):
    record = _record(record_dict, payload)
    path = write_json(record, tmp_path / "record.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert GateRecord.model_validate(loaded).model_dump() == record.model_dump()
    assert loaded["output"]["path"] == _marker(0) + payload


# --- HTML ------------------------------------------------------------------------------------------------------------


class _Structure(HTMLParser):
    """Every start/end tag with its attribute names, and all text (character references decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag, ()))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.tags.append(("<!--", ()))

    def handle_pi(self, data):
        self.tags.append(("<?", ()))

    def unknown_decl(self, data):
        self.tags.append(("<![", ()))


def _parse_html(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    parser.close()
    return parser


_HTML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_html_gains_no_element_and_shows_the_text(payload, record_dict, plain):
    html = render_html(_record(record_dict, payload))
    hostile, benign = _parse_html(html), _parse_html(render_html(plain))
    assert hostile.tags == benign.tags  # no element, attribute, comment or declaration from the payload
    assert not _HTML_FORBIDDEN.search(html)
    text = "".join(hostile.text)
    for i in _shown("html"):
        assert _marker(i) + _HTML_FORBIDDEN.sub("", payload) in text, FIELDS[i][0]


def test_pdf_renders_the_hostile_report(record_dict, tmp_path):
    """One PDF with every payload at once (the PDF is the HTML, printed): it renders and shows the text."""
    record = _record(record_dict, " ".join(p for k, p in PAYLOADS.items() if k != "long"))
    pdf = html_to_pdf(render_html(record), tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (poppler-utils) not installed: the PDF's text is not checked")
    text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "[click me](https://example.org)" in text and "<script>alert(1)</script>" in text


# --- Markdown --------------------------------------------------------------------------------------------------------

MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])  # raw HTML on, as GitHub renders it


def _md_structure(text: str) -> list[str]:
    """Block and inline token types in order (links, emphasis, code spans, raw HTML, images, table cells ...)."""
    out = []
    for token in MARKDOWN.parse(text):
        out.append(token.type)
        out += [child.type for child in token.children or ()]
    return out


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_markdown_gains_no_link_emphasis_or_html_and_shows_the_text(payload, record_dict, plain):
    text = render_markdown(_record(record_dict, payload))
    assert _md_structure(text) == _md_structure(render_markdown(plain))
    assert "\x00" not in text and "\x1b" not in text
    rendered = "".join(_parse_html(MARKDOWN.render(text)).text)
    for i in _shown("markdown"):
        assert _marker(i) + _single_line(payload) in rendered, FIELDS[i][0]


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_markdown_helpers_cannot_be_broken_out_of(payload):
    """A code span holds any text (its fence is longer than any backtick run inside); plain text is escaped so that
    GitHub's extensions (bare-URL links, math, strikethrough) see nothing either."""
    for helper, expected_types in ((md_code, ["code_inline"]), (md_text, ["text"])):
        line = f"x {helper(payload)} y"
        tokens = MARKDOWN.parse(line)
        assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], helper
        kinds = [c.type for c in tokens[1].children if c.type not in ("text", "softbreak")]
        assert kinds == (expected_types if helper is md_code else []), (helper, kinds)
        assert "".join(_parse_html(MARKDOWN.render(line)).text).strip() == f"x {_single_line(payload)} y".strip()
    plain_text = md_text(payload)
    assert "://" not in plain_text and not re.search(r"(?i)\bwww\.", plain_text)
    assert not re.search(r"(?<!\\)[$~*\[\]`|<>]", plain_text)


def test_the_reported_injection_renders_no_link():
    """Finding 6: a backtick in the --out path broke out of the code span and rendered a link in summary.md."""
    path = "o`[click me](https://example.org) **bold**`/released/run/video.mp4"
    html = MARKDOWN.render(f"- **Output:** {md_code(path)}")
    assert "<a " not in html and "<strong>bold" not in html and "<code>" in html
    broken = MARKDOWN.render(f"- **Output:** `{path}`")  # what the old summary wrote
    assert '<a href="https://example.org">click me</a>' in broken  # (the test would have caught it)


# --- JUnit -----------------------------------------------------------------------------------------------------------

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_structure(root: ET.Element) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.tag, tuple(sorted(e.attrib))) for e in root.iter()]


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_junit_parses_and_keeps_the_text(payload, record_dict, plain):
    record = _record(record_dict, payload)
    xml = render_junit(record)
    root = ET.fromstring(xml)  # expat: a strict XML 1.0 parser
    assert _xml_structure(root) == _xml_structure(ET.fromstring(render_junit(plain)))
    clean = _XML_ILLEGAL.sub("", payload)
    cases = root.findall(".//testcase")
    assert cases[0].get("name") == _marker(FIELDS.index(next(f for f in FIELDS if f[0] == "check name"))) + clean
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["output"] == _marker(0) + clean  # attributes keep newlines and tabs (escaped as &#10; &#9;)
    as_text = clean.replace("\r\n", "\n").replace("\r", "\n")  # XML normalises line ends in element text
    everything = "".join(root.itertext()) + " ".join(v for e in root.iter() for v in e.attrib.values())
    for i in _shown("junit"):
        assert _marker(i) + as_text in everything or _marker(i) + clean in everything, FIELDS[i][0]


# --- console ---------------------------------------------------------------------------------------------------------


def _console_output(renderables) -> str:
    """What the CLI's console prints (its own settings: no emoji, no highlighting, soft wrap), as plain text, at a
    width that wraps nothing (a tree wraps its labels at the terminal's width)."""
    from gate import cli

    console = cli.console
    width = console.width
    console.width = 100_000
    try:
        with console.capture() as capture:
            for r in renderables:
                console.print(r)
    finally:
        console.width = width
    return capture.get()


def _assert_terminal_safe(out: str) -> None:
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", out), repr(out[:200])


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_console_verdict_prints_user_text_literally(payload, record_dict):
    record = _record(record_dict, payload)
    lines = verdict_lines(record, f"out/{payload}")
    out = _console_output(lines)
    _assert_terminal_safe(out)
    assert len(out.splitlines()) == len(lines)  # a value cannot add a line
    shown = printable(payload, newlines=False)
    for i in _shown("console"):
        assert _marker(i) + shown in out, FIELDS[i][0]
    assert "out/" + shown in out


def _report(payload: str) -> VerifyReport:
    manifest = ManifestReport(
        path=f"v/{payload}.mp4",
        state="Invalid",
        active_label=f"urn:{payload}",
        title=f"title {payload}",
        failures=(ValidationCode(code=f"code.{payload}", explanation=f"why {payload}"),),
        assertions={f"a.{payload}": {"decision": payload}},
        ingredients=({"title": f"portrait {payload}", "format": "image/png", "relationship": "inputTo"},),
        signature={"common_name": f"cn {payload}", "alg": "ES256"},
    )
    watermark = WatermarkCheck(payload_hex=None, confidence=None, method=f"m {payload}", frames_decoded=0)
    record = {"seq": 1, "run_id": f"run {payload}", "decision": payload, "created_at": "now"}
    return VerifyReport(path=f"v/{payload}.mp4", manifest=manifest, watermark=watermark, agreement=None, record=record)


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_console_verify_tree_prints_user_text_literally(payload):
    out = _console_output([verify_tree(_report(payload))])
    _assert_terminal_safe(out)
    shown = printable(payload, newlines=False)
    for label in ("v/", "urn:", "title ", "why ", "portrait ", "cn ", "run ", "m "):
        assert label + shown in out, label
    assert len(out.splitlines()) == len(_console_output([verify_tree(_report(PLAIN))]).splitlines())


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_console_verify_tree_prints_compliance_rows_literally(payload):
    from reports.schema import ComplianceRow

    def rows(text: str) -> list[ComplianceRow]:
        base = {"requirement": f"req {text}", "source": f"src {text}"}
        return [
            ComplianceRow(id="consent", status="met", evidence=[f"ev {text}", f"ev2 {text}"], **base),
            ComplianceRow(id="cawg-identity", status="not_met", evidence=[], reason=f"why {text}", **base),
        ]

    out = _console_output([verify_tree(_report(payload), rows(payload))])
    _assert_terminal_safe(out)
    shown = printable(payload, newlines=False)
    for label in ("req ", "ev ", "ev2 ", "why "):
        assert label + shown in out, label
    plain = _console_output([verify_tree(_report(PLAIN), rows(PLAIN))])
    assert len(out.splitlines()) == len(plain.splitlines())


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_error_lines_stay_one_printable_line(payload):
    status = exit_status(InputError(f"in/{payload}.mp4", "must be a video", payload))
    assert status.code == 4 and "\n" not in status.message
    _assert_terminal_safe(status.message)
    assert status.message.startswith("hallo3-gate: error: in/")


# --- comparison report -----------------------------------------------------------------------------------------------


def _comparison_runs(root: Path, make_record, payload: str) -> tuple[list[Path], list[str]]:
    safe = payload.replace("/", "∕").replace("\x00", "")[:200]  # a directory name cannot hold "/" or NUL
    dirs = []
    for k, model in enumerate(("m1", "m2")):
        folder = root / f"{model} {safe}"
        for seed in range(3):
            record = make_record("released", seed=seed, model=model, shift=float(k))
            data = record.model_dump()
            data["generator"]["model_name"] = f"{model}{payload}"
            write_json(GateRecord.model_validate(data), folder / record.run_id / "record.json")
        dirs.append(folder)
    return dirs, [f"A1{payload}", f"A2{payload}"]


@pytest.fixture(scope="module")
def plain_comparison(make_record, tmp_path_factory) -> str:
    dirs, labels = _comparison_runs(tmp_path_factory.mktemp("plain"), make_record, PLAIN)
    return render_comparison_html(build_comparison(load_runs(dirs, labels=labels), n_boot=50))


@pytest.mark.parametrize("payload", PARAMS, ids=IDS)
def test_comparison_report_gains_no_element_and_shows_labels(payload, make_record, tmp_path, plain_comparison):
    dirs, labels = _comparison_runs(tmp_path, make_record, payload)
    df = load_runs(dirs, labels=labels)
    cmp = build_comparison(df, n_boot=50)
    html = render_comparison_html(cmp)
    hostile, benign = _parse_html(html), _parse_html(plain_comparison)
    assert hostile.tags == benign.tags
    text = "".join(hostile.text)
    for label in labels:
        assert _HTML_FORBIDDEN.sub("", label) in text
    csv = io.StringIO()
    cmp.per_video().to_csv(csv, index=False)
    assert sorted(set(pd.read_csv(io.StringIO(csv.getvalue()), keep_default_na=False)["model"])) == sorted(labels)
