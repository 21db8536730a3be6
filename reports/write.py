"""One entry point: every report of one gate run, each written atomically into ``out_dir``."""

from __future__ import annotations

from pathlib import Path

from reports.atomic import write_text_atomic
from reports.html import render_html
from reports.json_report import write_json
from reports.junit import write_junit
from reports.markdown import append_step_summary, write_markdown
from reports.pdf import html_to_pdf
from reports.schema import GateRecord

REPORT_FILES = {
    "json": "record.json",
    "html": "report.html",
    "pdf": "report.pdf",
    "junit": "junit.xml",
    "markdown": "summary.md",
}


def write_reports(
    record: GateRecord, out_dir: str | Path, *, pdf: bool = True, step_summary: bool = True
) -> dict[str, Path]:
    """Write record.json, report.html, report.pdf, junit.xml and summary.md; return {kind: path}.

    The JSON is written first (it is the authoritative record); the HTML is rendered once and reused for the PDF.
    When ``$GITHUB_STEP_SUMMARY`` is set (and ``step_summary``), the Markdown summary is also appended there.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"json": write_json(record, out / REPORT_FILES["json"])}
    html = render_html(record)

    paths["html"] = write_text_atomic(out / REPORT_FILES["html"], html)
    if pdf:
        paths["pdf"] = html_to_pdf(html, out / REPORT_FILES["pdf"])
    paths["junit"] = write_junit(record, out / REPORT_FILES["junit"])
    paths["markdown"] = write_markdown(record, out / REPORT_FILES["markdown"])
    if step_summary:
        summary = append_step_summary(record)
        if summary is not None:
            paths["step_summary"] = summary
    return paths
