"""The deployment's own configuration: who the provider is and how long records are kept.

These are facts about the organisation running the gate, not about one run, so they live in one small TOML file
(``$HALLO3_GATE_CONFIG``, else ``$XDG_CONFIG_HOME/hallo3-gate/config.toml``, else ``~/.config/hallo3-gate/config.toml``;
a missing default file is an empty configuration, a missing ``$HALLO3_GATE_CONFIG`` file is an error)::

    [provider]
    name = "Example Media GmbH"     # the provider named in every latent disclosure (SB 942 §22757.3(b), EU 50(2))

    [retention]
    days = 183                      # ledger rows and run directories older than this may be removed (>= 6 months)

Environment variables override the file: ``$HALLO3_GATE_PROVIDER``, ``$HALLO3_GATE_RETENTION_DAYS``. A policy's
``[disclosure] provider`` overrides both for the runs under that policy (``provider_name``).

Nothing here has a built-in provider: a latent disclosure must name the real provider, so an unconfigured provider is
``None`` and the gate refuses to run a policy that requires a disclosure (exit 2, naming where to set it).
Errors are ``UsageError`` (exit 2) naming the file or variable, the rule and the value.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reports.errors import UsageError

ENV_CONFIG = "HALLO3_GATE_CONFIG"
ENV_PROVIDER = "HALLO3_GATE_PROVIDER"
ENV_RETENTION_DAYS = "HALLO3_GATE_RETENTION_DAYS"
MIN_RETENTION_DAYS = 183  # China's Labelling Measures Art. 9: logs kept at least 6 months (6 x 30.5 days)
DEFAULT_RETENTION_DAYS = 365
MAX_RETENTION_DAYS = 36_500
MAX_PROVIDER = 200
MAX_CONFIG_BYTES = 64 * 1024
TOP_KEYS = {"provider", "retention"}
PROVIDER_KEYS = {"name"}
RETENTION_KEYS = {"days"}


@dataclass(frozen=True)
class GateConfig:
    """The configuration in force. ``source`` says where each value came from (for records and error messages)."""

    provider: str | None = None
    provider_source: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    retention_source: str = "default"
    path: Path | None = None  # the config file read, if any

    def to_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "provider_source": self.provider_source,
            "retention_days": self.retention_days,
            "retention_source": self.retention_source,
            "path": str(self.path) if self.path is not None else None,
        }


def default_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hallo3-gate" / "config.toml"


def check_provider(where: str, value: object) -> str:
    """A provider name: 1-200 printable characters (it is written into signed manifests and MP4 metadata)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PROVIDER or not value.isprintable():
        raise UsageError(where, f"provider name must be 1-{MAX_PROVIDER} printable characters", repr(value)[:80])
    return value.strip()


def check_retention_days(where: str, value: object) -> int:
    """Whole days, at least ``MIN_RETENTION_DAYS`` (China Art. 9: six months) and at most a century."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise UsageError(where, "retention must be a whole number of days", repr(value)[:40]) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(where, "retention must be a whole number of days", repr(value)[:40])
    if not MIN_RETENTION_DAYS <= value <= MAX_RETENTION_DAYS:
        raise UsageError(
            where,
            f"retention must be {MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS} days (at least six months: China's "
            "Labelling Measures Art. 9)",
            value,
        )
    return value


def _read(path: Path) -> dict[str, object]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(str(path), "configuration file must be readable", exc.strerror) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(str(path), f"configuration file must be at most {MAX_CONFIG_BYTES} bytes", len(data))
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(str(path), "configuration file must be UTF-8 TOML", " ".join(str(exc).split())) from None
    _known(str(path), table, TOP_KEYS)
    return table


def _known(where: str, table: object, keys: set[str]) -> None:
    if not isinstance(table, dict):
        raise UsageError(where, "must be a TOML table", type(table).__name__)
    unknown = sorted(set(table) - keys)
    if unknown:
        raise UsageError(where, f"unknown key(s); known: {', '.join(sorted(keys))}", ", ".join(unknown))


def load(env: Mapping[str, str] | None = None) -> GateConfig:
    """The configuration: the file (if any), then the environment on top."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_CONFIG) or None
    path = Path(explicit).expanduser() if explicit else default_path(env)
    table: dict[str, object] = {}
    if explicit and not path.is_file():
        raise UsageError(ENV_CONFIG, "must name an existing configuration file", str(path))
    if path.is_file():
        table = _read(path)
    else:
        path = None
    provider = provider_source = None
    retention, retention_source = DEFAULT_RETENTION_DAYS, "default"
    if "provider" in table:
        where = f"{path}: provider"
        _known(where, table["provider"], PROVIDER_KEYS)
        if "name" in table["provider"]:  # type: ignore[operator]
            provider = check_provider(f"{where}.name", table["provider"]["name"])  # type: ignore[index]
            provider_source = f"{path} [provider] name"
    if "retention" in table:
        where = f"{path}: retention"
        _known(where, table["retention"], RETENTION_KEYS)
        if "days" in table["retention"]:  # type: ignore[operator]
            retention = check_retention_days(f"{where}.days", table["retention"]["days"])  # type: ignore[index]
            retention_source = f"{path} [retention] days"
    if env.get(ENV_PROVIDER):
        provider, provider_source = check_provider(ENV_PROVIDER, env[ENV_PROVIDER]), f"${ENV_PROVIDER}"
    if env.get(ENV_RETENTION_DAYS):
        retention = check_retention_days(ENV_RETENTION_DAYS, env[ENV_RETENTION_DAYS])
        retention_source = f"${ENV_RETENTION_DAYS}"
    return GateConfig(provider, provider_source, retention, retention_source, path)


def provider_name(config: GateConfig, policy_provider: str | None = None, policy_where: str = "policy") -> str | None:
    """The provider for a run: the policy's ``[disclosure] provider`` if it names one, else the configuration's."""
    if policy_provider:
        return check_provider(policy_where, policy_provider)
    return config.provider
