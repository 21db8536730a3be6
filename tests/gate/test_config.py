"""gate.config: the provider and the retention period, from a file and the environment, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate import config as C
from reports.errors import UsageError


def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_nothing_configured_means_no_provider_and_the_default_retention(tmp_path):
    cfg = C.load({"XDG_CONFIG_HOME": str(tmp_path)})
    assert cfg.provider is None and cfg.provider_source is None
    assert cfg.retention_days == C.DEFAULT_RETENTION_DAYS >= C.MIN_RETENTION_DAYS == 183
    assert cfg.path is None


def test_the_file_names_the_provider_and_the_environment_overrides_it(tmp_path):
    path = _file(tmp_path, '[provider]\nname = "Example Media GmbH"\n[retention]\ndays = 200\n')
    cfg = C.load({"HALLO3_GATE_CONFIG": str(path)})
    assert (cfg.provider, cfg.retention_days) == ("Example Media GmbH", 200)
    assert str(path) in cfg.provider_source and "[retention] days" in cfg.retention_source
    env = {"HALLO3_GATE_CONFIG": str(path), "HALLO3_GATE_PROVIDER": "Other Co", "HALLO3_GATE_RETENTION_DAYS": "400"}
    cfg = C.load(env)
    assert (cfg.provider, cfg.provider_source) == ("Other Co", "$HALLO3_GATE_PROVIDER")
    assert (cfg.retention_days, cfg.retention_source) == (400, "$HALLO3_GATE_RETENTION_DAYS")


def test_the_default_file_is_found_under_xdg_config_home(tmp_path):
    (tmp_path / "hallo3-gate").mkdir()
    _file(tmp_path / "hallo3-gate", '[provider]\nname = "XDG Co"\n')
    assert C.load({"XDG_CONFIG_HOME": str(tmp_path)}).provider == "XDG Co"


def test_a_policy_provider_wins_over_the_configuration():
    cfg = C.GateConfig(provider="Config Co", provider_source="x")
    assert C.provider_name(cfg, "Policy Co") == "Policy Co"
    assert C.provider_name(cfg, None) == "Config Co"


@pytest.mark.parametrize(
    ("text", "where", "rule"),
    [
        ("[provider]\nname = 3\n", "provider.name", "printable"),
        ('[provider]\nname = "   "\n', "provider.name", "printable"),
        ('[provider]\nname = "a\\u0007b"\n', "provider.name", "printable"),
        ("[provider]\nowner = 'x'\n", "provider", "unknown key"),
        ("[retention]\ndays = 30\n", "retention.days", "six months"),
        ("[retention]\ndays = 1.5\n", "retention.days", "whole number"),
        ("[retention]\ndays = true\n", "retention.days", "whole number"),
        ("[retentoin]\ndays = 200\n", "config.toml", "unknown key"),
        ("[provider\n", "config.toml", "UTF-8 TOML"),
    ],
)
def test_bad_configuration_names_the_key_the_rule_and_the_value(tmp_path, text, where, rule):
    path = _file(tmp_path, text)
    with pytest.raises(UsageError) as err:
        C.load({"HALLO3_GATE_CONFIG": str(path)})
    assert where in str(err.value) and rule in str(err.value)


def test_bad_environment_values_are_refused(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(UsageError, match=r"HALLO3_GATE_RETENTION_DAYS.*six months.*got 10"):
        C.load({**env, "HALLO3_GATE_RETENTION_DAYS": "10"})
    with pytest.raises(UsageError, match=r"HALLO3_GATE_RETENTION_DAYS.*whole number"):
        C.load({**env, "HALLO3_GATE_RETENTION_DAYS": "half a year"})
    with pytest.raises(UsageError, match=r"HALLO3_GATE_PROVIDER.*printable"):
        C.load({**env, "HALLO3_GATE_PROVIDER": "x" * 201})


def test_an_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(UsageError, match=r"HALLO3_GATE_CONFIG.*existing configuration file"):
        C.load({"HALLO3_GATE_CONFIG": str(tmp_path / "missing.toml")})


def test_the_test_suite_runs_under_its_own_configuration():
    cfg = C.load()
    assert cfg.provider == "hallo3-gate test suite" and cfg.path is not None and cfg.path.name == "config.toml"
