from __future__ import annotations

import pytest

from gate import policy
from metrics.measurement import Measurement
from reports.errors import ExitCode, UsageError


def m(name: str, value: float | None, **details: float) -> Measurement:
    if value is None:
        return Measurement.not_measured(name, f"not measured: {name} weights missing")
    return Measurement(name, value, "test", details=details)


def test_default_and_offline_policies_load():
    p = policy.load()
    assert p.name == "default" and {"sync_c", "sync_d", "identity_mean", "fps"} <= p.metrics_needed()
    assert len(p.sha256) == 64
    from importlib import resources

    off = policy.parse(resources.files("gate").joinpath("policies/offline.toml").read_text(), "offline.toml")
    assert "sync_c" not in off.metrics_needed() and "avsync_corr" in off.metrics_needed()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_q"\nmin=1', "checks.a.metric"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"', "needs at least one bound"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin="high"', "checks.a.min"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=1\nrequired="yes"', "checks.a.required"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=1\ncolour=3', "checks.a.colour"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="fvd"\nmax=1', "reference_set"),
        ('name="x"\nversion="1"\nextra=1\n[checks.a]\nmetric="sync_c"\nmin=1', "extra"),
        ('version="1"\n[checks.a]\nmetric="sync_c"\nmin=1', "name"),
        ('name="x"\nversion="1"\n[checks.a\n', "valid TOML"),
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=5\nmax=1', "min must not exceed max"),
    ],
)
def test_validation_errors_name_the_key(text, needle):
    with pytest.raises(UsageError) as exc:
        policy.parse(text, "p.toml")
    assert needle in str(exc.value) and "p.toml" in str(exc.value)
    assert exc.value.exit_code == ExitCode.USAGE


def test_missing_policy_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="policy file must be readable"):
        policy.load(tmp_path / "nope.toml")


POLICY = policy.parse(
    """
name = "t"
version = "1"
[checks.sync]
metric = "sync_c"
min = 3.0
[checks.offset]
metric = "sync_offset"
abs_max = 2
[checks.identity]
metric = "identity_mean"
min = "backend"
[checks.advisory]
metric = "sync_d"
max = 9.0
required = false
"""
)


def test_all_pass_releases():
    ms = {
        "sync_c": m("sync_c", 5.0),
        "sync_offset": m("sync_offset", -1),
        "identity_mean": m("identity_mean", 0.8, threshold=0.5),
        "sync_d": m("sync_d", 9.5),
    }
    results = policy.evaluate(POLICY, ms)
    assert [r.outcome for r in results] == ["pass", "pass", "pass", "fail"]
    assert results[2].threshold == 0.5  # the backend's own threshold was used
    d = policy.decide(results)
    assert d.released and d.exit_code == ExitCode.RELEASED and d.label == "released"


def test_failed_required_check_quarantines_with_reason():
    ms = {
        "sync_c": m("sync_c", 1.0),
        "sync_offset": m("sync_offset", 4),
        "identity_mean": m("identity_mean", 0.8, threshold=0.5),
    }
    d = policy.decide(policy.evaluate(POLICY, ms))
    assert not d.released and d.exit_code == ExitCode.GATE_FAILED
    assert any("sync_c = 1 violates >= 3" in r for r in d.reasons)
    assert any("|sync_offset| = 4 violates <= 2" in r for r in d.reasons)


def test_unmeasured_required_check_fails_closed_with_exit_3():
    ms = {
        "sync_c": m("sync_c", None),
        "sync_offset": m("sync_offset", 0),
        "identity_mean": m("identity_mean", 0.9, threshold=0.5),
    }
    results = policy.evaluate(POLICY, ms)
    assert results[0].outcome == "not_measured" and "weights missing" in results[0].message
    d = policy.decide(results)
    assert not d.released and d.exit_code == ExitCode.NOT_MEASURED


def test_backend_threshold_on_the_right_scale_only():
    cos = Measurement(
        "identity_mean", 0.7, "t", unit="cosine", details={"threshold": {"metric": "cosine", "value": 0.4}}
    )
    euc = Measurement(
        "identity_mean", 0.7, "t", unit="cosine", details={"threshold": {"metric": "euclidean", "value": 0.6}}
    )
    assert policy.backend_threshold(cos) == 0.4
    assert policy.backend_threshold(euc) is None
    res = policy.evaluate(POLICY, {"identity_mean": euc})
    assert next(r for r in res if r.name == "identity").outcome == "not_measured"


def test_two_bounds_give_two_results():
    p = policy.parse('name="f"\nversion="1"\n[checks.fps]\nmetric="fps"\nmin=24.5\nmax=25.5')
    res = policy.evaluate(p, {"fps": m("fps", 30.0)})
    assert [(r.name, r.op, r.outcome) for r in res] == [("fps.min", ">=", "pass"), ("fps.max", "<=", "fail")]


def test_absent_metric_and_backend_without_threshold_are_not_measured():
    ms = {"identity_mean": m("identity_mean", 0.9)}  # no threshold stated by the backend
    results = {r.name: r for r in policy.evaluate(POLICY, ms)}
    assert results["sync"].outcome == "not_measured" and "not computed" in results["sync"].message
    assert results["identity"].outcome == "not_measured"
    assert policy.decide(list(results.values())).exit_code == ExitCode.NOT_MEASURED


def test_regression_limits_against_baseline():
    p = policy.parse(
        'name="r"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=0\n[regression]\nmax_drop={sync_c=0.5, sync_d=0.5}'
    )
    ms = {"sync_c": m("sync_c", 5.0), "sync_d": m("sync_d", 8.0)}
    out = {r.name: r for r in policy.regression_checks(p, ms, {"sync_c": 5.8, "sync_d": 7.8})}
    assert out["regression.sync_c"].outcome == "fail"  # dropped 0.8 > 0.5
    assert out["regression.sync_d"].outcome == "pass"  # worse by 0.2 <= 0.5
    out2 = policy.regression_checks(p, ms, {"sync_c": 5.0})
    assert {r.outcome for r in out2 if r.metric == "sync_d"} == {"not_measured"}


OK_CHECK = '[checks.a]\nmetric="sync_c"\nmin=1\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=1\nrequired=false', "at least one required check"),
        ('name="x"\nversion="1"\n' + OK_CHECK + "[weights]\nallow_unpinned=1", "weights.allow_unpinned"),
        ('name="x"\nversion="1"\n' + OK_CHECK + "[weights]\npinned=true", "weights.pinned"),
        ('name="x"\nversion="1"\nweights=3\n' + OK_CHECK, "weights"),
        ('name="x"\nversion="1"\nregression=3\n' + OK_CHECK, "regression"),
        ('name="x"\nversion="1"\n' + OK_CHECK + "[regression]\nbaseline=3", "regression.baseline"),
        ('name="x"\nversion="1"\n' + OK_CHECK + "[regression]\nmax_drop=3", "regression.max_drop"),
        ('name="x"\nversion="1"\n' + OK_CHECK + 'why=["a"]', "checks.a.why"),
        ('name="x"\nversion="1"\ndescription=2\n' + OK_CHECK, "description"),
        ('name="' + "n" * 201 + '"\nversion="1"\n' + OK_CHECK, "at most 200 characters"),
    ],
)
def test_more_validation_errors_name_the_key(text, needle):
    with pytest.raises(UsageError) as exc:
        policy.parse(text, "p.toml")
    assert needle in str(exc.value) and "p.toml" in str(exc.value)


def test_weights_table_sets_allow_unpinned_default_false():
    base = 'name="x"\nversion="1"\n' + OK_CHECK
    assert policy.parse(base).allow_unpinned_weights is False
    assert policy.parse(base + "[weights]\nallow_unpinned=true").allow_unpinned_weights is True
    assert policy.parse(base + "[weights]\nallow_unpinned=false").allow_unpinned_weights is False
    assert policy.load().allow_unpinned_weights is False  # the shipped default forbids unpinned weight files


def _checks(n: int) -> str:
    return 'name="x"\nversion="1"\n' + "".join(f'[checks.c{i}]\nmetric="fps"\nmin=1\n' for i in range(n))


def test_check_count_is_capped_at_200():
    assert len(policy.parse(_checks(policy.MAX_CHECKS)).checks) == 200
    with pytest.raises(UsageError, match="at most 200 checks") as exc:
        policy.parse(_checks(policy.MAX_CHECKS + 1), "big.toml")
    assert "(got 201)" in str(exc.value)


def test_policy_file_size_is_capped_before_parsing(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text(_checks(5) + "# " + "x" * policy.MAX_POLICY_BYTES + "\n")
    with pytest.raises(UsageError, match=f"at most {policy.MAX_POLICY_BYTES} bytes") as exc:
        policy.load(big)
    assert str(big) in str(exc.value)


def test_non_utf8_policy_file_is_a_one_line_usage_error(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(_checks(1).encode() + b'description = "caf\xe9"\n')
    with pytest.raises(UsageError) as exc:
        policy.load(bad)
    msg = exc.value.one_line()
    assert str(bad) in msg and "UTF-8" in msg and "0xe9" in msg and "\n" not in msg


def test_a_directory_is_not_a_policy_file(tmp_path):
    with pytest.raises(UsageError, match=r"must be readable \(got Is a directory\)"):
        policy.load(tmp_path)


def test_decide_refuses_results_without_a_required_check():
    advisory = policy.CheckResult("a", "sync_d", "<=", 9.0, 8.0, "pass", False, "ok")
    with pytest.raises(ValueError, match="required"):
        policy.decide([advisory])


def test_a_refused_weight_file_quarantines_with_exit_3_even_when_every_check_passes():
    ms = {
        "sync_c": m("sync_c", 5.0),
        "sync_offset": m("sync_offset", 0),
        "identity_mean": m("identity_mean", 0.8, threshold=0.5),
    }
    results = policy.evaluate(POLICY, ms)
    assert policy.decide(results).released
    why = "facenet.onnx: sha256 must equal the registry pin (got 1234…)"
    d = policy.decide(results, refused_weights=[why])
    assert not d.released and d.exit_code == ExitCode.NOT_MEASURED and d.reasons == (f"weights: {why}",)


# --- [review]: human approval after the automated checks --------------------------------------------------------------

REVIEW_BASE = 'name="x"\nversion="1"\n[checks.a]\nmetric="sync_c"\nmin=1\n'


def test_a_policy_without_review_needs_no_people():
    assert policy.parse(REVIEW_BASE, "p.toml").review is None
    assert policy.load().review is None


def test_an_empty_review_table_takes_the_documented_defaults():
    r = policy.parse(REVIEW_BASE + "[review]\n", "p.toml").review
    assert r == policy.ReviewPolicy(2, True, policy.DEFAULT_REASON_CODES)
    assert r.required_approvals == 2 and r.four_eyes is True
    assert "meets-policy" in r.reason_codes and "other" in r.reason_codes and len(r.reason_codes) == 9


def test_review_values_are_read():
    text = REVIEW_BASE + '[review]\nrequired_approvals = 3\nfour_eyes = false\nreason_codes = ["ok", "bad-lips"]\n'
    r = policy.parse(text, "p.toml").review
    assert (r.required_approvals, r.four_eyes, r.reason_codes) == (3, False, ("ok", "bad-lips"))


def test_the_shipped_offline_review_policy_is_the_offline_policy_with_review():
    from importlib import resources

    files = resources.files("gate").joinpath("policies")
    offline = policy.parse(files.joinpath("offline.toml").read_text(), "offline.toml")
    reviewed = policy.parse(files.joinpath("offline-review.toml").read_text(), "offline-review.toml")
    assert reviewed.name == "offline-review" and reviewed.checks == offline.checks
    assert reviewed.allow_unpinned_weights == offline.allow_unpinned_weights
    assert reviewed.review == policy.ReviewPolicy(2, True, policy.DEFAULT_REASON_CODES)
    assert reviewed.disclosure == offline.disclosure and reviewed.compliance_required == offline.compliance_required


@pytest.mark.parametrize(
    ("review", "key", "rule", "value"),
    [
        ("required_approvals = 0", "review.required_approvals", "from 1 to 10", "0"),
        ("required_approvals = 11", "review.required_approvals", "from 1 to 10", "11"),
        ("required_approvals = true", "review.required_approvals", "whole number", "True"),
        ("required_approvals = 2.0", "review.required_approvals", "whole number", "2.0"),
        ('required_approvals = "2"', "review.required_approvals", "whole number", "'2'"),
        ('four_eyes = "yes"', "review.four_eyes", "true or false", "'yes'"),
        ("four_eyes = 1", "review.four_eyes", "true or false", "1"),
        ("reason_codes = []", "review.reason_codes", "1 to 50 unique codes", "0"),
        ('reason_codes = "ok"', "review.reason_codes", "must be a list", "str"),
        ('reason_codes = ["ok", "Bad"]', "review.reason_codes", "[a-z0-9-]", "'Bad'"),
        ('reason_codes = ["-ok"]', "review.reason_codes", "[a-z0-9-]", "'-ok'"),
        ('reason_codes = ["a b"]', "review.reason_codes", "[a-z0-9-]", "'a b'"),
        (f'reason_codes = ["{"x" * 41}"]', "review.reason_codes", "at most 40", "x" * 41),
        ("reason_codes = [1]", "review.reason_codes", "[a-z0-9-]", "1"),
        ('reason_codes = ["ok", "ok"]', "review.reason_codes", "unique", "duplicate 'ok'"),
        ("approvers = 2", "review.approvers", "unknown key", "required_approvals"),
    ],
)
def test_review_validation_errors_name_the_key_the_rule_and_the_value(review, key, rule, value):
    with pytest.raises(UsageError) as exc:
        policy.parse(REVIEW_BASE + "[review]\n" + review + "\n", "p.toml")
    text = str(exc.value)
    assert f"p.toml: {key}" in text and rule in text and value in text, text
    assert exc.value.exit_code == ExitCode.USAGE


def test_fifty_reason_codes_are_allowed_and_fifty_one_are_not():
    codes = ", ".join(f'"c{i}"' for i in range(50))
    assert len(policy.parse(REVIEW_BASE + f"[review]\nreason_codes = [{codes}]\n").review.reason_codes) == 50
    with pytest.raises(UsageError, match=r"review\.reason_codes.*51"):
        policy.parse(REVIEW_BASE + f'[review]\nreason_codes = [{codes}, "c50"]\n')


def test_review_must_be_a_table():
    with pytest.raises(UsageError, match=r"p\.toml: review: must be a table"):
        policy.parse("review = 2\n" + REVIEW_BASE, "p.toml")


# --- [disclosure] and [compliance] ------------------------------------------------------------------------------------

SHIPPED = ("default_policy.toml", "policies/offline.toml", "policies/offline-review.toml")
REQUIRED_ROWS = (
    "eu-ai-act-50-2",
    "eu-code-1-1-2-watermark",
    "ca-sb942-latent",
    "cn-gb45438-implicit",
    "cn-gb45438-explicit",
    "eu-ai-act-50-4-label",
    "consent",
)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_burn_the_label_and_require_the_compliance_rows(name):
    from importlib import resources

    p = policy.parse(resources.files("gate").joinpath(name).read_text(encoding="utf-8"), name)
    assert p.disclosure == policy.DisclosurePolicy(
        visible=True, text="AI-generated", position="top-right", start_seconds=3.0, persistent=True, size=0.06
    )
    assert p.compliance_required == REQUIRED_ROWS


def test_without_the_tables_no_label_and_no_required_rows():
    assert POLICY.disclosure is None and POLICY.compliance_required == ()


def test_an_empty_disclosure_table_takes_the_documented_defaults():
    d = policy.parse(REVIEW_BASE + "[disclosure]\n").disclosure
    assert d == policy.DisclosurePolicy()
    assert (d.visible, d.text, d.position, d.start_seconds, d.persistent, d.size, d.font, d.provider) == (
        True, "AI-generated", "top-right", 3.0, True, 0.06, None, None,
    )  # fmt: skip


def test_disclosure_values_are_read(tmp_path):
    text = (
        '[disclosure]\nvisible = false\ntext = "AI生成"\nposition = "bottom-left"\nstart_seconds = 2\n'
        'persistent = false\nsize = 0.05\nfont = "fonts/label.otf"\nprovider = "  Example Ltd "\n'
    )
    d = policy.parse(REVIEW_BASE + text, str(tmp_path / "p.toml")).disclosure
    assert d == policy.DisclosurePolicy(
        False, "AI生成", "bottom-left", 2.0, False, 0.05, str(tmp_path / "fonts/label.otf"), "Example Ltd"
    )
    assert isinstance(d.start_seconds, float)
    absolute = policy.parse(REVIEW_BASE + '[disclosure]\nfont = "/usr/share/x.ttf"\n', str(tmp_path / "p.toml"))
    assert absolute.disclosure.font == "/usr/share/x.ttf"


@pytest.mark.parametrize(
    ("line", "key", "rule", "value"),
    [
        ('visible = "yes"', "disclosure.visible", "true or false", "'yes'"),
        ("persistent = 1", "disclosure.persistent", "true or false", "1"),
        ('text = ""', "disclosure.text", "non-empty string", "''"),
        ('text = "   "', "disclosure.text", "not only spaces", "(got '"),
        ('text = "AI\\ngenerated"', "disclosure.text", "one line", "'AI\\ngenerated'"),
        (f'text = "{"x" * 41}"', "disclosure.text", "at most 40", "41"),
        ("text = 3", "disclosure.text", "non-empty string", "3"),
        ('position = "centre"', "disclosure.position", "top-left, top-right, bottom-left, bottom-right", "'centre'"),
        ("start_seconds = 1.9", "disclosure.start_seconds", "at least 2 s", "1.9"),
        ("start_seconds = 3601", "disclosure.start_seconds", "to 3600", "3601"),
        ('start_seconds = "3"', "disclosure.start_seconds", "finite number", "'3'"),
        ("start_seconds = nan", "disclosure.start_seconds", "finite number", "nan"),
        ("size = 0.049", "disclosure.size", "at least 5 %", "0.049"),
        ("size = 0.3", "disclosure.size", "to 0.25", "0.3"),
        ("size = true", "disclosure.size", "finite number", "True"),
        ('font = ""', "disclosure.font", "non-empty string", "''"),
        ("font = 1", "disclosure.font", "non-empty string", "1"),
        ('provider = " "', "disclosure.provider", "non-empty string", "' '"),
        ("provider = 5", "disclosure.provider", "non-empty string", "5"),
        ("colour = 1", "disclosure.colour", "unknown key", "visible"),
    ],
)
def test_disclosure_errors_name_the_key_the_rule_and_the_value(line, key, rule, value):
    with pytest.raises(UsageError) as exc:
        policy.parse(REVIEW_BASE + "[disclosure]\n" + line + "\n", "p.toml")
    text = str(exc.value)
    assert f"p.toml: {key}" in text and rule in text and value in text, text
    assert exc.value.exit_code == ExitCode.USAGE


def test_disclosure_must_be_a_table():
    with pytest.raises(UsageError, match=r"p\.toml: disclosure: must be a table"):
        policy.parse("disclosure = true\n" + REVIEW_BASE, "p.toml")


def test_compliance_require_is_read_in_order():
    p = policy.parse(REVIEW_BASE + '[compliance]\nrequire = ["consent", "eu-ai-act-50-2"]\n')
    assert p.compliance_required == ("consent", "eu-ai-act-50-2")
    assert policy.parse(REVIEW_BASE + "[compliance]\nrequire = []\n").compliance_required == ()
    assert policy.parse(REVIEW_BASE + "[compliance]\n").compliance_required == ()


def test_every_compliance_row_id_may_be_required():
    from gate.compliance import ROW_IDS

    rows = ", ".join(f'"{r}"' for r in ROW_IDS)
    assert policy.parse(REVIEW_BASE + f"[compliance]\nrequire = [{rows}]\n").compliance_required == ROW_IDS


@pytest.mark.parametrize(
    ("table", "key", "rule", "value"),
    [
        ('require = ["gdpr"]', "compliance.require", "compliance row ids", "'gdpr'"),
        ("require = [1]", "compliance.require", "compliance row ids", "1"),
        ('require = "consent"', "compliance.require", "must be a list", "str"),
        ('require = ["consent", "consent"]', "compliance.require", "unique", "duplicate 'consent'"),
        ('rows = ["consent"]', "compliance.rows", "unknown key", "require"),
    ],
)
def test_compliance_errors_name_the_key_the_rule_and_the_value(table, key, rule, value):
    with pytest.raises(UsageError) as exc:
        policy.parse(REVIEW_BASE + "[compliance]\n" + table + "\n", "p.toml")
    text = str(exc.value)
    assert f"p.toml: {key}" in text and rule in text and value in text, text


def test_compliance_must_be_a_table():
    with pytest.raises(UsageError, match=r"p\.toml: compliance: must be a table"):
        policy.parse("compliance = 1\n" + REVIEW_BASE, "p.toml")
