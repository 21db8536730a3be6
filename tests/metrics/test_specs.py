"""The table of metric specs (metrics.specs): complete, consistent, import-light, and read by policy and schema."""

from __future__ import annotations

import pickle
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


# --- the places that read the table ---------------------------------------------------------------------------------


def test_policy_known_metrics_are_the_table():
    from gate.policy import KNOWN_METRICS

    assert KNOWN_METRICS == EXPECTED_DIRECTIONS


def test_schema_set_level_metrics_are_the_table():
    from metrics.measurement import Measurement
    from reports.schema import SET_LEVEL_METRICS, MeasurementRecord

    assert {"fvd"} == SET_LEVEL_METRICS
    assert MeasurementRecord.from_measurement(Measurement("fvd", 250.0, "I3D")).scope == "set"
    assert MeasurementRecord.from_measurement(Measurement("sync_c", 5.0, "SyncNet")).scope == "video"


def test_measurement_takes_unit_and_direction_from_the_table():
    from metrics.measurement import Measurement

    m = Measurement("identity_mean", 0.7, "t")
    assert (m.unit, m.higher_is_better) == ("cosine", True)
    n = Measurement.not_measured("sync_d", "weights missing", "syncnet")
    assert (n.unit, n.higher_is_better) == ("", False)
    assert Measurement("fps", 25.0, "t", unit="frames/s").higher_is_better is None
    import numpy as np

    assert Measurement("sync_c", 5.0, "t", higher_is_better=np.bool_(True)).higher_is_better is True
    assert pickle.loads(pickle.dumps(m)) == m  # R1's workers send measurements back to the driver
    own = Measurement("my_score", 1.0, "mine", higher_is_better=False, unit="pt")  # outside the table: kept as given
    assert (own.unit, own.higher_is_better) == ("pt", False)


@pytest.mark.parametrize(
    "kw, rule",
    [({"higher_is_better": False}, "higher_is_better=False"), ({"unit": "px"}, "unit='px'")],
)
def test_measurement_contradicting_the_table_refused(kw, rule):
    from metrics.measurement import Measurement

    with pytest.raises(ValueError, match=rf"'sync_c': .*{rule}.*disagree with metrics.specs"):
        Measurement("sync_c", 5.0, "t", **kw)


# --- every Measurement the measuring code produces agrees with the table (real measure functions, tiny inputs) -----


def _assert_agree(measurements) -> set[str]:
    names = set()
    for m in measurements:
        s = spec(m.name)  # an unknown name fails here, naming the metric
        assert (m.unit, m.higher_is_better) == (s.unit, s.higher_is_better), m.name
        names.add(m.name)
    return names


def test_technical_measurements_agree():
    import numpy as np

    from gate.technical import measure_technical

    frames = np.zeros((10, 8, 6, 3), np.uint8)
    with_audio = measure_technical(frames, 25.0, np.zeros(6400, np.float32), 16000)
    without = measure_technical(frames, 25.0, None, None)
    expected = {"fps", "width", "height", "duration_s", "frame_count", "audio_present", "audio_video_drift_s"}
    assert _assert_agree(with_audio) == expected and _assert_agree(without) == expected
    assert {m.name: m.value for m in with_audio}["audio_video_drift_s"] == pytest.approx(0.0, abs=1e-12)
    assert not {m.name: m for m in without}["audio_video_drift_s"].measured


def test_fvd_measurements_agree():
    import numpy as np

    from metrics.fvd import NUM_CLASSES, FVDState, compute_fvd

    rng = np.random.default_rng(0)
    gen, ref = FVDState(), FVDState()
    gen.add_features(rng.standard_normal((20, NUM_CLASSES)).astype(np.float32))
    ref.add_features(rng.standard_normal((20, NUM_CLASSES)).astype(np.float32) + 0.5)
    measured = compute_fvd(gen, ref).measurements()
    assert measured[0].measured and _assert_agree(measured) == {"fvd"}
    too_small = compute_fvd(FVDState(), ref).measurements()
    assert not too_small[0].measured and _assert_agree(too_small) == {"fvd"}


def test_lipsync_measurements_agree(tmp_path):
    import numpy as np
    from lipsync_fixtures import detecting_s3fd, write_s3fd_fixture, write_syncnet_fixture

    from metrics.lipsync import measure_lipsync

    weights = {
        "syncnet_weights": write_syncnet_fixture(tmp_path / "syncnet_v2.model", seed=0),
        "s3fd_weights": write_s3fd_fixture(tmp_path / "sfd_face.pth", detecting_s3fd(seed=0)),
    }
    frames = np.random.default_rng(0).integers(0, 255, (60, 128, 128, 3), dtype=np.uint8)
    speech = (0.1 * np.random.default_rng(0).standard_normal(int(2.4 * 16000))).astype(np.float32)
    scored = measure_lipsync(frames, 25.0, speech, 16000, **weights)
    assert scored.measured, scored.reason
    assert _assert_agree(scored.measurements()) == {"sync_c", "sync_d", "sync_offset"}
    silent = measure_lipsync(frames, 25.0, np.zeros_like(speech), 16000, **weights)
    assert not silent.measured
    assert _assert_agree(silent.measurements()) == {"sync_c", "sync_d", "sync_offset"}


def test_gate_measure_candidate_agrees(monkeypatch, tmp_path, speaker_clip, speaker_wav, portraits):
    """The gate's own path on 2.4 s of a real clip: identity, AV-sync, consent measured; the rest not measured (no
    SyncNet/I3D weights here, no FVD reference); every row, measured or not, carries the table's unit and direction."""
    import cv2
    import numpy as np

    from gate.measure import measure_candidate
    from gate.media import read_audio, read_video

    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv("HALLO3_GATE_WEIGHTS", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    frames = read_video(speaker_clip, max_frames=60).frames
    small = np.stack([cv2.resize(f, (488, 264), interpolation=cv2.INTER_AREA) for f in frames])
    audio, rate = read_audio(speaker_wav)
    reference = cv2.cvtColor(cv2.imread(str(portraits[2])), cv2.COLOR_BGR2RGB)
    out = measure_candidate(small, 25.0, audio[: 60 * rate // 25], rate, reference, needed=set(SPECS), consent_db=None)
    assert _assert_agree(out.measurements.values()) == EXPECTED_NAMES
    measured = {n for n, m in out.measurements.items() if m.measured}
    assert {"identity_mean", "face_present_ratio", "avsync_corr", "consent", "fps"} <= measured
    assert not {"sync_c", "fvd"} & measured


# --- reports.compare reads directions and units from the table ----------------------------------------------------


def _long_rows(metric: str, hib, unit: str, values: dict[str, list[float]]):
    import pandas as pd

    from reports.compare import LONG_COLUMNS

    rows = []
    for model, vals in values.items():
        for i, v in enumerate(vals):
            rows.append(
                dict.fromkeys(LONG_COLUMNS)
                | {
                    "model": model, "record_path": f"{model}/{i}/record.json", "run_id": f"{model}-{i}",
                    "decision": "released", "exit_code": 0, "metric": metric, "value": v, "measured": True,
                    "higher_is_better": hib, "unit": unit, "protocol": "p", "scope": "video",
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def test_compare_ranks_by_the_table_direction_when_records_state_none():
    """Records that carry no direction (older not-measured rows) are ranked by the table: lower Sync-D wins."""
    from reports.compare import build_comparison

    df = _long_rows("sync_d", None, "", {"a": [6.0, 6.1, 6.2, 6.05], "b": [9.0, 9.1, 9.2, 9.05]})
    m = build_comparison(df, n_boot=200).metric("sync_d")
    assert (m.higher_is_better, m.winner, m.unit) == (False, "a", "")
    fps = build_comparison(_long_rows("fps", None, "fps", {"a": [25.0, 25.0], "b": [30.0, 30.0]})).metric("fps")
    assert (fps.higher_is_better, fps.winner, fps.unit) == (None, None, "frames/s")


def test_compare_refuses_records_contradicting_the_table():
    from reports.compare import build_comparison
    from reports.errors import InputError

    df = _long_rows("sync_d", True, "", {"a": [6.0, 6.1], "b": [9.0, 9.1]})
    with pytest.raises(InputError, match=r"sync_d.*higher_is_better False \(metrics.specs\)"):
        build_comparison(df, n_boot=200)


def test_compare_metric_outside_the_table_keeps_recorded_direction():
    from reports.compare import build_comparison

    df = _long_rows("my_score", True, "pt", {"a": [1.0, 1.1, 1.2], "b": [5.0, 5.1, 5.2]})
    m = build_comparison(df, n_boot=200).metric("my_score")
    assert (m.higher_is_better, m.winner, m.unit) == (True, "b", "pt")
