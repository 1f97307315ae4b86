"""Invoice and credit note documents for people: HTML and PDF, with the seller's branding.

``InvoiceRenderer`` is what the composition root wires in. It is cheap to build: the branding
(logo file read) is loaded on first use, and Jinja2 / ReportLab are imported only by the
renderer that needs them, so functions that never render an invoice never pay for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from meterbill.config import Settings
from meterbill.rendering.branding import Branding

__all__ = ["Branding", "InvoiceRenderer"]


class InvoiceRenderer:
    def __init__(self, branding: Branding | Settings) -> None:
        self._source = branding

    @functools.cached_property
    def branding(self) -> Branding:
        src = self._source
        return src if isinstance(src, Branding) else Branding.from_settings(src)

    def html(self, doc: Mapping[str, Any]) -> str:
        from meterbill.rendering.html import render_html

        return render_html(doc, self.branding)

    def pdf(self, doc: Mapping[str, Any]) -> bytes:
        from meterbill.rendering.pdf import render_pdf

        return render_pdf(doc, self.branding)

    def credit_note_html(self, doc: Mapping[str, Any]) -> str:
        from meterbill.rendering.html import render_credit_note_html

        return render_credit_note_html(doc, self.branding)

    def credit_note_pdf(self, doc: Mapping[str, Any]) -> bytes:
        from meterbill.rendering.pdf import render_credit_note_pdf

        return render_credit_note_pdf(doc, self.branding)

    def portal(self, view: Mapping[str, Any], token_path: str, form_value: str, message: str | None = None,
               error: str | None = None) -> str:
        """The customer portal's page (``rendering/portal.py``)."""
        from meterbill.rendering.portal import render_portal

        return render_portal(view, token_path, form_value, self.branding, message=message, error=error)

    def portal_error(self, status: int) -> str:
        from meterbill.rendering.portal import render_error

        return render_error(status, self.branding)
