"""Invoice / credit note -> HTML (Jinja2, autoescape on, template compiled once per process)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup, escape

from meterbill.rendering.branding import Branding
from meterbill.rendering.templates import INVOICE_HTML
from meterbill.rendering.view import InvoiceView, credit_note_view, invoice_view


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=False, keep_trailing_newline=True)
    return env.from_string(INVOICE_HTML)


@functools.lru_cache(maxsize=8)
def _escaped(src: str) -> Markup:
    """The logo's src escaped once, not on every page (a data: URI runs to tens of KiB)."""
    return escape(src)


def render_view(view: InvoiceView, branding: Branding) -> str:
    logo_src = _escaped(branding.logo.src) if branding.logo is not None else None
    return _template().render(inv=view, brand=branding, logo_src=logo_src)


def render_html(doc: Mapping[str, Any], branding: Branding) -> str:
    """A complete, self-contained HTML page (inline CSS; an embedded logo as a data URI)."""
    return render_view(invoice_view(doc), branding)


def render_credit_note_html(doc: Mapping[str, Any], branding: Branding) -> str:
    return render_view(credit_note_view(doc), branding)
