"""The table of metric specs (metrics.specs): complete, consistent, import-light, and read by policy and schema."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metrics.specs import HEADLINE, SPECS, MetricSpec, set_level, spec

# Written out by hand from the issue and the brief (not derived from the code under test).
EXPECTED_NAMES = {
    "sync_c", "sync_d", "sync_offset", "identity_mean", "identity_min", "identity_p10", "face_present_ratio",
    "avsync_offset", "avsync_corr", "fvd", "fps", "width", "height", "duration_s", "frame_count", "audio_present",
    "audio_video_drift_s", "consent",
}  # fmt: skip
EXPECTED_DIRECTIONS = {
    "sync_c": True, "sync_d": False, "sync_offset": None, "identity_mean": True, "identity_min": True,
    "identity_p10": True, "face_present_ratio": True, "avsync_offset": None, "avsync_corr": True, "fvd": False,
    "fps": None, "width": None, "height": None, "duration_s": None, "frame_count": None, "audio_present": True,
    "audio_video_drift_s": False, "consent": True,
}  # fmt: skip


def test_table_names_every_metric_with_its_direction():
    assert set(SPECS) == EXPECTED_NAMES
    assert {n: s.higher_is_better for n, s in SPECS.items()} == EXPECTED_DIRECTIONS
    assert all(n == s.name for n, s in SPECS.items())


def test_headline_and_scope():
    assert set(HEADLINE) == {"sync_c", "sync_d", "identity_mean", "fvd", "avsync_corr"}
    assert len(HEADLINE) == len(set(HEADLINE))
    assert set_level() == {"fvd"}
    assert {n for n, s in SPECS.items() if s.scope == "video"} == EXPECTED_NAMES - {"fvd"}


def test_labels_short_and_unique_protocols_one_line():
    labels = [s.label for s in SPECS.values()]
    assert len(labels) == len(set(labels))
    assert all(0 < len(label) <= 16 for label in labels)
    assert all(s.protocol.strip() and "\n" not in s.protocol for s in SPECS.values())
    assert SPECS["sync_c"].label == "Sync-C" and SPECS["fvd"].label == "FVD"


def test_spec_lookup_and_unknown_metric_named():
    assert spec("fvd") is SPECS["fvd"]
    with pytest.raises(KeyError, match="'sync_x'"):
        spec("sync_x")


def test_spec_arrow_and_direction_words():
    assert (spec("sync_c").arrow, spec("sync_d").arrow, spec("fps").arrow) == ("↑", "↓", "")
    assert spec("fvd").direction == "lower is better" and spec("fps").direction == "no direction"


@pytest.mark.parametrize(
    "kw, rule",
    [
        ({"scope": "clip"}, "scope"),
        ({"protocol": "two\nlines"}, "one non-empty line"),
        ({"protocol": " "}, "one non-empty line"),
        ({"label": ""}, "must not be empty"),
        ({"higher_is_better": None, "headline": True}, "headline metric needs a better direction"),
        ({"higher_is_better": 1}, "higher_is_better"),
    ],
)
def test_bad_spec_refused(kw, rule):
    args = {"name": "m", "label": "M", "unit": "", "higher_is_better": True, "scope": "video", "protocol": "p"}
    with pytest.raises(ValueError, match=rule):
        MetricSpec(**{**args, **kw})


def test_import_light():
    code = "import sys, metrics.specs; bad = {'torch', 'numpy'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
