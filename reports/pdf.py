"""The PDF audit report: WeasyPrint renders the same HTML with its print stylesheet (A4, page numbers).

WeasyPrint is given a URL fetcher that only accepts ``data:`` URLs, so rendering never touches the network or the
file system whatever the record holds.
"""

from __future__ import annotations

from pathlib import Path

from reports.atomic import atomic_path
from reports.errors import UsageError


def html_to_pdf(html: str, path: str | Path) -> Path:
    """Render self-contained HTML to a PDF file, atomically."""
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    except ImportError as exc:  # an optional dependency (extra "reports"): say so instead of a traceback
        raise UsageError(
            "weasyprint", "must be installed to write PDF reports (pip install 'hallo3-gate[reports]')", exc
        ) from None

    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)
    document = HTML(string=html, base_url=None, url_fetcher=fetcher, media_type="print").render()
    with atomic_path(path) as tmp:
        document.write_pdf(tmp)
    return Path(path)
