"""JUnit XML for CI: one ``<testcase>`` per policy check, and one named "human review" when the record carries a
review (pending: an ``<error>`` — not decided, which CI must not read as a pass; rejected: a ``<failure>``; released:
passed, with every approval in its output).

A failed check is a ``<failure>``, a check that could not be measured is an ``<error>`` (the gate could not decide
it, which CI must not read as a pass), a passed check has neither. Advisory (non-required) checks are reported the
same way with ``type="advisory"`` so a CI view can tell them apart. Suite properties carry the decision, run id,
output path and watermark payload. Text is escaped by ElementTree; characters XML 1.0 forbids are removed.

A record with a compliance matrix (schema 1.3) adds one ``<testcase classname="compliance" name="<row id>">`` per
row: ``not_met`` is a ``<failure>`` (``type="required"`` when the policy's ``[compliance] require`` names the row,
else ``type="advisory"``, like the checks), ``not_checked`` is ``<skipped>`` (nothing was verified, so it is neither a
pass nor a failure of the file), ``not_applicable`` passes with the reason in its ``<system-out>`` (the obligation
does not apply: there is nothing to fail), ``met`` passes with its evidence in ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from reports.atomic import write_bytes_atomic
from reports.schema import COMPLIANCE_LABELS, REVIEW_EVENT_LABELS, CheckRecord, ComplianceRow, GateRecord, ReviewRecord
from reports.templating import fmt_num

# Characters outside the XML 1.0 ``Char`` production (control characters, lone surrogates, U+FFFE/U+FFFF).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: object) -> str:
    return _ILLEGAL_XML.sub("", str(value))


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    return ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})


def _rule(check: CheckRecord) -> str:
    return f"{check.metric} {check.op} {fmt_num(check.threshold)}"


def _testcase(suite: ET.Element, check: CheckRecord, classname: str) -> None:
    case = _sub(suite, "testcase", classname=classname, name=check.name, time="0")
    kind = "required" if check.required else "advisory"
    detail = f"rule: {_rule(check)}\nvalue: {fmt_num(check.value)}\noutcome: {check.outcome}\n{check.message}".rstrip()
    if check.outcome == "fail":
        node = _sub(case, "failure", message=f"{_rule(check)} failed with {fmt_num(check.value)}", type=kind)
        node.text = xml_text(detail)
    elif check.outcome == "not_measured":
        node = _sub(case, "error", message=f"not measured: {check.message or check.metric}", type=kind)
        node.text = xml_text(detail)
    else:
        out = _sub(case, "system-out")
        out.text = xml_text(detail)


def _review_case(suite: ET.Element, review: ReviewRecord, classname: str) -> None:
    case = _sub(suite, "testcase", classname=classname, name="human review", time="0")
    lines = [
        f"state: {review.state}",
        f"rule: {review.required_approvals} approval(s) by different people"
        + ("; four eyes" if review.four_eyes else ""),
        f"submitted by: {review.submitted_by}",
    ]
    for e in review.events:
        notes = (("reason", e.reason), ("frame", e.frame), ("comment", e.comment))
        said = "".join(f"; {k}: {v}" for k, v in notes if v is not None)
        lines.append(
            f"{REVIEW_EVENT_LABELS[e.kind]} by {e.actor} ({e.role}) at {e.at:%Y-%m-%dT%H:%M:%SZ}, row {e.seq}{said}"
        )
    detail = xml_text("\n".join(lines))
    if review.state == "pending":
        msg = f"awaiting human review: {len(review.approvals)} of {review.required_approvals} approvals"
        _sub(case, "error", message=msg, type="awaiting-review").text = detail
    elif review.state == "quarantined":
        by = review.decided_by
        msg = f"rejected by {by.actor}: {by.reason}" if by is not None else "rejected"
        _sub(case, "failure", message=msg, type="rejected").text = detail
    else:
        _sub(case, "system-out").text = detail


COMPLIANCE_CLASSNAME = "compliance"


def _compliance_case(suite: ET.Element, row: ComplianceRow, required: bool) -> None:
    case = _sub(suite, "testcase", classname=COMPLIANCE_CLASSNAME, name=row.id, time="0")
    lines = [
        f"requirement: {row.requirement}",
        f"source: {row.source}",
        f"status: {COMPLIANCE_LABELS[row.status]}" + (" (required by the policy)" if required else ""),
        *(f"evidence: {e}" for e in row.evidence),
    ]
    if row.reason:
        lines.append(f"reason: {row.reason}")
    detail = xml_text("\n".join(lines))
    if row.status == "not_met" and required:
        _sub(case, "failure", message=f"not met: {row.reason}", type="required").text = detail
    elif row.status == "not_met":  # a row the policy does not require (e.g. one the project cannot meet) never
        # turns a release red in CI: skipped, with the reason
        _sub(case, "skipped", message=f"not met (advisory: the policy does not require it): {row.reason}")
        _sub(case, "system-out").text = detail
    elif row.status == "not_checked":
        _sub(case, "skipped", message=f"not checked: {row.reason}")
        _sub(case, "system-out").text = detail
    else:
        _sub(case, "system-out").text = detail


def render_junit(record: GateRecord) -> bytes:
    counts = record.check_counts()
    review = record.review
    if review is not None:  # the human review is one more test case: an error while pending, a failure if rejected
        counts = {**counts, "fail": counts["fail"] + (review.state == "quarantined")}
        counts["not_measured"] += review.state == "pending"
    rows = record.compliance_counts()
    required = set(record.compliance_required())
    failed_rows = sum(1 for r in record.compliance if r.status == "not_met" and r.id in required)
    counts = {**counts, "fail": counts["fail"] + failed_rows}
    skipped = rows["not_checked"] + rows["not_met"] - failed_rows
    tests = len(record.checks) + (review is not None) + len(record.compliance)
    total_time = f"{sum(record.timings.values()):.3f}"
    root = ET.Element(
        "testsuites",
        {
            "name": "hallo3-gate",
            "tests": str(tests),
            "failures": str(counts["fail"]),
            "errors": str(counts["not_measured"]),
            "skipped": str(skipped),
            "time": total_time,
        },
    )
    suite = _sub(
        root,
        "testsuite",
        name=f"hallo3-gate.{record.policy.name}",
        id=record.run_id,
        tests=tests,
        failures=counts["fail"],
        errors=counts["not_measured"],
        skipped=skipped,
        time=total_time,
        timestamp=record.created_at.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    props = _sub(suite, "properties")
    for name, value in (
        ("run_id", record.run_id),
        ("decision", record.decision),
        ("exit_code", record.exit_code),
        ("output", record.output.path),
        ("output_sha256", record.output.sha256),
        ("watermark_payload", record.watermark.payload),
        ("manifest_state", record.provenance.manifest_state),
        ("model", f"{record.generator.backend}:{record.generator.model_name}"),
        ("policy_sha256", record.policy.sha256),
        ("schema_version", record.schema_version),
    ):
        _sub(props, "property", name=name, value=value)
    classname = f"hallo3-gate.{record.policy.name}.checks"
    for check in record.checks:
        _testcase(suite, check, classname)
    if review is not None:
        _review_case(suite, review, f"hallo3-gate.{record.policy.name}.review")
    for row in record.compliance:
        _compliance_case(suite, row, row.id in required)
    out = _sub(suite, "system-out")
    out.text = xml_text(
        f"decision: {record.decision} (exit code {record.exit_code})\n"
        + "".join(f"reason: {reason}\n" for reason in record.reasons)
    )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(record: GateRecord, path: str | Path) -> Path:
    return write_bytes_atomic(path, render_junit(record))
