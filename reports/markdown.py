"""A short Markdown summary of one run, for humans in CI (GitHub Actions job summary) and chat.

``write_markdown`` writes ``summary.md`` atomically; ``append_step_summary`` appends the same text to the file named
by ``$GITHUB_STEP_SUMMARY`` (GitHub concatenates what every step appends there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reports.atomic import write_text_atomic
from reports.schema import GateRecord
from reports.templating import fmt_num

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OUTCOME = {"pass": "✅ pass", "fail": "❌ fail", "not_measured": "⚠️ not measured"}


def md_text(value: object) -> str:
    """Text safe inside a Markdown table cell: one line, no pipes, no raw HTML."""
    text = " ".join(_CONTROL.sub("", str(value)).split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`")):
        text = text.replace(raw, escaped)
    return text


def render_markdown(record: GateRecord) -> str:
    counts = record.check_counts()
    icon = "✅" if record.released else "⛔"
    lines = [
        f"## {icon} hallo3-gate: {record.decision.upper()} (exit code {record.exit_code})",
        "",
        f"Run `{record.run_id}` · {record.mode} · model {md_text(record.generator.model_name)} "
        f"({md_text(record.generator.backend)}) · policy {md_text(record.policy.name)}",
        "",
    ]
    if record.reasons:
        lines += ["**Reasons**", ""] + [f"- {md_text(reason)}" for reason in record.reasons] + [""]
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
        f"- **Output:** `{md_text(record.output.path)}` (sha256 `{record.output.sha256[:16]}…`)",
        f"- **Watermark:** payload `{wm.payload}`, decoded from disk: {'match' if wm.match else 'NO MATCH' if wm.match is not None else 'not checked'}",
        f"- **C2PA manifest:** {pv.manifest_state}"
        + (f" (failures: {md_text(', '.join(pv.failures))})" if pv.failures else ""),
    ]
    if record.ledger is not None:
        lines.append(f"- **Ledger:** row {record.ledger.seq}, hash `{record.ledger.row_hash[:16]}…`")
    return "\n".join(lines) + "\n"


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
