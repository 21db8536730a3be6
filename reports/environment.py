"""The software environment of a run, for its audit record."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from reports.schema import EnvironmentRecord

_OPTIONAL = ("numpy", "av", "invisible-watermark", "onnxruntime", "opencv-python", "diffusers", "transformers")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def collect_environment(extra: tuple[str, ...] = _OPTIONAL) -> EnvironmentRecord:
    """Versions of Python, torch, c2pa-python, hallo3-gate and a few other packages that shape the result."""
    packages = {name: v for name in extra if (v := _version(name)) is not None}
    return EnvironmentRecord(
        python=sys.version.split()[0],
        hallo3_gate=_version("hallo3-gate") or "unknown (not installed)",
        torch=_version("torch"),
        c2pa=_version("c2pa-python"),
        platform=platform.platform(),
        packages=packages,
    )
