"""A short Markdown summary of one run, for humans in CI (GitHub Actions job summary) and chat.

``write_markdown`` writes ``summary.md`` atomically; ``append_step_summary`` appends the same text to the file named
by ``$GITHUB_STEP_SUMMARY`` (GitHub concatenates what every step appends there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reports.atomic import write_text_atomic
from reports.schema import COMPLIANCE_LABELS, REVIEW_EVENT_LABELS, GateRecord
from reports.templating import fmt_num

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_OUTCOME = {"pass": "✅ pass", "fail": "❌ fail", "not_measured": "⚠️ not measured"}
# Characters that can open or close inline Markdown (CommonMark and GitHub's extensions): backslash escapes, code
# spans, emphasis, strikethrough, links/images, raw HTML and entities, table cells, math.
_ESCAPES = {"\\": "\\\\", "`": "\\`", "*": "\\*", "~": "\\~", "[": "\\[", "]": "\\]", "|": "\\|", "$": "\\$"}
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# an underscore between two letters/digits never opens or closes emphasis (sync_c_min stays readable); others do
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# GitHub links bare URLs (scheme://, www.): an escaped slash or dot reads the same and is no longer a URL
_WWW = re.compile(r"\b([wW]{3})\.")


def _single_line(value: object) -> str:
    return " ".join(_CONTROL.sub("", str(value)).split())


def md_text(value: object) -> str:
    """Text safe in a Markdown text position (a paragraph, a list item, a table cell): one line, and no character
    that could start a link, image, emphasis, code span, raw HTML, math or table cell — what is written is what
    shows. Underscores inside words stay as they are (they never mark emphasis there)."""
    text = "".join(_ENTITIES.get(ch) or _ESCAPES.get(ch) or ch for ch in _single_line(value))
    text = _UNDERSCORE.sub(r"\\_", text)
    return _WWW.sub(r"\1\\.", text.replace("://", ":\\/\\/"))


def md_code(value: object) -> str:
    """``value`` as an inline code span that nothing inside can end: the fence is one backtick longer than the longest
    run of backticks in the text, padded with a space (which Markdown strips) so a leading or trailing backtick
    stays content. Inside a code span nothing is interpreted: no link, emphasis, HTML or autolink. One line; not for
    table cells (GitHub splits cells on ``|`` before it sees code spans)."""
    text = _single_line(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def render_markdown(record: GateRecord) -> str:
    counts = record.check_counts()
    icon = {"released": "✅", "pending": "⏳"}.get(record.decision, "⛔")
    lines = [
        f"## {icon} hallo3-gate: {record.decision.upper()} (exit code {record.exit_code})",
        "",
        f"Run {md_code(record.run_id)} · {md_text(record.mode)} · model {md_text(record.generator.model_name)} "
        f"({md_text(record.generator.backend)}) · policy {md_text(record.policy.name)}",
        "",
    ]
    if record.reasons:
        lines += ["**Reasons**", ""] + [f"- {md_text(reason)}" for reason in record.reasons] + [""]
    lines += _review_lines(record)
    lines += _compliance_lines(record)
    lines += [
        f"**Checks:** {counts['pass']} passed, {counts['fail']} failed, {counts['not_measured']} not measured",
        "",
        "| check | rule | value | outcome | required |",
        "|---|---|---:|---|---|",
    ]
    for c in record.checks:
        lines.append(
            f"| {md_text(c.name)} | {md_text(c.metric)} {md_text(c.op)} {md_text(fmt_num(c.threshold))} "
            f"| {md_text(fmt_num(c.value))} | {_OUTCOME[c.outcome]} | {'yes' if c.required else 'advisory'} |"
        )
    wm = record.watermark
    pv = record.provenance
    lines += [
        "",
        f"- **Output:** {md_code(record.output.path)} (sha256 {md_code(record.output.sha256[:16] + '…')})",
        f"- **Watermark:** payload {md_code(wm.payload)}, decoded from disk: {_match(wm.match)}",
        f"- **C2PA manifest:** {md_text(pv.manifest_state)}"
        + (f" (failures: {md_text(', '.join(pv.failures))})" if pv.failures else ""),
    ]
    if record.ledger is not None:
        lines.append(f"- **Ledger:** row {record.ledger.seq}, hash {md_code(record.ledger.row_hash[:16] + '…')}")
    return "\n".join(lines) + "\n"


EVIDENCE_CHARS = 160


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_COMPLIANCE_ICON = {"met": "✅", "not_met": "❌", "not_applicable": "–", "not_checked": "–"}


def _compliance_lines(record: GateRecord) -> list[str]:
    """The compliance matrix as a short list: "✅/❌/– id: reason" (a met row shows its evidence, shortened to
    ``EVIDENCE_CHARS``; the full text is in the record and the HTML report)."""
    if not record.compliance:
        return []
    counts = record.compliance_counts()
    summary = ", ".join(f"{n} {COMPLIANCE_LABELS[s]}" for s, n in counts.items() if n)
    lines = [f"**Compliance:** {summary}", ""]
    for row in record.compliance:
        status = "" if row.status in ("met", "not_met") else f" ({COMPLIANCE_LABELS[row.status]})"
        said = row.reason if row.status != "met" else _shorten("; ".join(row.evidence), EVIDENCE_CHARS)
        lines.append(f"- {_COMPLIANCE_ICON[row.status]} {md_text(row.id)}{status}: {md_text(said)}")
    return [*lines, ""]


def _review_lines(record: GateRecord) -> list[str]:
    """The human review: state, rule, and one table row per ledger event (who, role, reason, comment, time)."""
    rv = record.review
    if rv is None:
        return []
    rule = "; four eyes" if rv.four_eyes else ""
    lines = [
        f"**Human review:** {md_text(rv.state)} · {len(rv.approvals)} of {rv.required_approvals} approvals{rule} · "
        f"submitted by {md_text(rv.submitted_by)}",
        "",
        "| row | event | who | role | reason | comment | time |",
        "|---:|---|---|---|---|---|---|",
    ]
    for e in rv.events:
        said = e.comment if e.frame is None else f"frame {e.frame}: {e.comment}"
        cells = [
            fmt_num(e.seq),
            REVIEW_EVENT_LABELS[e.kind],
            e.actor,
            e.role,
            e.reason,
            said,
            f"{e.at:%Y-%m-%d %H:%M:%S} UTC",
        ]
        lines.append("| " + " | ".join(md_text("—" if c is None else c) for c in cells) + " |")
    return [*lines, ""]


def _match(match: bool | None) -> str:
    return "not checked" if match is None else ("match" if match else "NO MATCH")


def write_markdown(record: GateRecord, path: str | Path) -> Path:
    return write_text_atomic(path, render_markdown(record))


def append_step_summary(record: GateRecord, environ: dict[str, str] | None = None) -> Path | None:
    """Append the summary to ``$GITHUB_STEP_SUMMARY`` when that variable is set; return the file, else None."""
    target = (os.environ if environ is None else environ).get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(render_markdown(record) + "\n")
    return path
