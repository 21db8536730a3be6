"""The self-contained HTML audit report of one gate run.

Everything is inline: CSS, plots (PNG ``data:`` URIs), keyframes (JPEG ``data:`` URIs). A Content-Security-Policy
meta tag (``default-src 'none'; img-src data:``) makes the browser refuse any external request even if a field of
the record held a URL. Every value from the record is HTML-escaped by the template engine (autoescape, no ``|safe``
on record values), and characters HTML forbids in a document (control characters but whitespace, lone surrogates,
non-characters) are dropped, so a hostile value can neither add markup nor make the document invalid.
"""

from __future__ import annotations

import re

from reports.plots import record_plots
from reports.schema import COMPLIANCE_LABELS, REVIEW_EVENT_LABELS, FileRef, GateRecord
from reports.templating import render

# Characters the HTML standard makes parse errors in text (controls but tab/newline/CR/form feed, surrogates, U+FFFE/F).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean_html(html: str) -> str:
    """A rendered document without the characters HTML forbids (the templates never emit them; values might)."""
    return _FORBIDDEN.sub("", html)


def _files(record: GateRecord) -> list[tuple[str, FileRef]]:
    files: list[tuple[str, FileRef]] = []
    for role in ("portrait", "audio", "video"):
        ref = getattr(record.inputs, role)
        if ref is not None:
            files.append((f"input: {role}", ref))
    files.append((f"output ({record.decision})", record.output))
    return files


def render_html(record: GateRecord) -> str:
    """The audit report as one HTML document (with a "Human review" section when the record carries a review, and a
    "Compliance" table with the disclosure, label and consent when it carries a compliance matrix)."""
    return clean_html(
        render(
            "audit_report.html.j2",
            r=record,
            counts=record.check_counts(),
            plots=record_plots(record),
            files=_files(record),
            digest=record.content_digest(),
            review_labels=REVIEW_EVENT_LABELS,
            compliance_counts=record.compliance_counts(),
            compliance_labels=COMPLIANCE_LABELS,
            compliance_required=record.compliance_required(),
        )
    )
