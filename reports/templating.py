"""The Jinja environment shared by the HTML reports: autoescaping, strict undefined, formatting filters."""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
DASH = "—"


def fmt_num(value: Any, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits; booleans and strings as they are; ``None`` as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return DASH  # e.g. the spread of a single value: there is none
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 10**digits or abs(value) < 10 ** -(digits - 1)):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def fmt_utc(value: datetime | None) -> str:
    if value is None:
        return DASH
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_dash(value: Any) -> str:
    return DASH if value is None or value == "" else str(value)


def fmt_yesno(value: bool | None) -> str:
    return "not checked" if value is None else ("yes" if value else "NO")


def fmt_direction(value: bool | None) -> str:
    return DASH if value is None else ("↑ higher" if value else "↓ lower")


def tojson_pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=fmt_num,
        bytes=fmt_bytes,
        utc=fmt_utc,
        dash=fmt_dash,
        yesno=fmt_yesno,
        direction=fmt_direction,
        tojson_pretty=tojson_pretty,
    )
    return env


def base_css() -> str:
    return (TEMPLATES / "base.css").read_text(encoding="utf-8")


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(css=base_css(), **context)
