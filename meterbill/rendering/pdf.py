"""Invoice / credit note -> PDF (ReportLab canvas: pure Python, no system libraries; ~ms per invoice).

Layout is done here by hand on A4 — a flow of blocks placed top to bottom, laid out first and
drawn second, so every page can say "Page n of N" and the lines table repeats its header on
each page it continues on. Text is set in the PDF base fonts (Helvetica, WinAnsi: Western
European scripts, €, ×, –); any run of characters outside that set (Greek, Cyrillic, Japanese,
Chinese, Korean…) switches to an Adobe CID font that viewers supply (nothing is embedded, so
the file stays small and fast to make). Scripts that neither covers (Arabic, Hebrew, Thai,
emoji) show as the viewer's missing-glyph box. Amounts are drawn exactly as stored.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.pdfdoc import PDFImageXObject
from reportlab.pdfgen.canvas import Canvas

from meterbill.rendering.branding import Branding, Logo
from meterbill.rendering.view import InvoiceView, LineRow, credit_note_view, invoice_view

# Binary (Flate-only) streams instead of ReportLab's default ASCII85 armour: pure-Python ASCII85
# took ~70 % of the time of a PDF with a logo, and made the file 25 % larger. Process-wide, but
# this module is ReportLab's only user.
rl_config.useA85 = 0

PAGE_W, PAGE_H = A4
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 48.0, 44.0, 40.0
CONTENT_W = PAGE_W - 2 * MARGIN_X
RIGHT = PAGE_W - MARGIN_X

REGULAR, BOLD = "Helvetica", "Helvetica-Bold"
CJK, HANGUL = "HeiseiKakuGo-W5", "HYGothic-Medium"   # Adobe-Japan1 also has Greek and Cyrillic

INK = (0.12, 0.16, 0.22)
MUTED = (0.42, 0.45, 0.50)
HAIRLINE = (0.85, 0.87, 0.90)
BADGES = {  # status -> (text, fill, stroke), as in the HTML
    "draft": ((0.57, 0.25, 0.05), (1.0, 0.95, 0.78), (0.96, 0.62, 0.04)),
    "final": ((0.12, 0.25, 0.69), (0.86, 0.92, 1.0), (0.23, 0.51, 0.96)),
    "paid": ((0.09, 0.40, 0.20), (0.86, 0.99, 0.91), (0.13, 0.77, 0.37)),
}
BADGE_GREY = ((0.22, 0.25, 0.32), (0.90, 0.91, 0.92), (0.61, 0.64, 0.69))

# lines table: description | quantity | unit price | amount
COL_QTY_R = MARGIN_X + 318
COL_UNIT_R = MARGIN_X + 410
DESC_W = 200.0
QTY_W = COL_QTY_R - (MARGIN_X + DESC_W) - 8
UNIT_W = COL_UNIT_R - COL_QTY_R - 8
AMOUNT_W = RIGHT - COL_UNIT_R - 8

BODY, SMALL, TINY = 9.5, 8.2, 7.5


@functools.cache
def _register_cid_fonts() -> None:
    for name in (CJK, HANGUL):
        pdfmetrics.registerFont(UnicodeCIDFont(name))


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0xAC00 <= o <= 0xD7AF


def _winansi(ch: str) -> bool:
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def runs(s: str, font: str) -> list[tuple[str, str]]:
    """Split text into (font, text) runs: base font where WinAnsi can encode it, CID otherwise."""
    if s.isascii():
        return [(font, s)]
    try:
        s.encode("cp1252")
        return [(font, s)]
    except UnicodeEncodeError:
        pass
    _register_cid_fonts()
    out: list[tuple[str, str]] = []
    for ch in s:
        f = font if _winansi(ch) else HANGUL if _is_hangul(ch) else CJK
        if out and out[-1][0] == f:
            out[-1] = (f, out[-1][1] + ch)
        else:
            out.append((f, ch))
    return out


def width(s: str, size: float, bold: bool = False) -> float:
    font = BOLD if bold else REGULAR
    return sum(pdfmetrics.stringWidth(t, f, size) for f, t in runs(s, font))


def wrap(s: str, size: float, max_w: float, bold: bool = False) -> list[str]:
    """Greedy word wrap; a word longer than the line is broken by characters."""
    if not s:
        return [""]
    if width(s, size, bold) <= max_w:
        return [s]
    lines: list[str] = []
    cur = ""
    for word in s.split(" "):
        cand = f"{cur} {word}" if cur else word
        if width(cand, size, bold) <= max_w:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        cur = ""
        while width(word, size, bold) > max_w:   # hard-break a long token (ids, CJK text)
            cut = len(word) - 1
            while cut > 1 and width(word[:cut], size, bold) > max_w:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        cur = word
    if cur:
        lines.append(cur)
    return lines


class Pen:
    """Text and shapes on one canvas, with the WinAnsi/CID fallback."""

    def __init__(self, c: Canvas) -> None:
        self.c = c

    def text(self, x: float, y: float, s: str, size: float = BODY, *, bold: bool = False,
             color: tuple[float, float, float] = INK, align: str = "left") -> float:
        if not s:
            return 0.0
        font = BOLD if bold else REGULAR
        parts = runs(s, font)
        w = sum(pdfmetrics.stringWidth(t, f, size) for f, t in parts)
        if align == "right":
            x -= w
        elif align == "center":
            x -= w / 2
        c = self.c
        c.setFillColorRGB(*color)
        for f, t in parts:
            c.setFont(f, size)
            c.drawString(x, y, t)
            x += pdfmetrics.stringWidth(t, f, size)
        return w

    def rule(self, x1: float, x2: float, y: float, color: tuple[float, float, float], w: float = 0.6) -> None:
        self.c.setStrokeColorRGB(*color)
        self.c.setLineWidth(w)
        self.c.line(x1, y, x2, y)


@dataclass(slots=True)
class Block:
    height: float
    draw: Callable[[Pen, float], None]   # (pen, top y)
    table_row: bool = False              # repeat the table header above it on a new page
    keep: float = 0.0                    # height that must fit together with this block


@functools.lru_cache(maxsize=8)
def _logo_reader(data: bytes) -> ImageReader:
    return ImageReader(io.BytesIO(data))


@functools.lru_cache(maxsize=8)
def _logo_xobject(data: bytes) -> PDFImageXObject:
    """The logo as a PDF image object, decoded and compressed once per process."""
    name = "logo" + hashlib.sha256(data).hexdigest()[:24]
    obj = PDFImageXObject(name, _logo_reader(data), mask="auto")
    obj.name = name
    return obj


def draw_logo(c: Canvas, data: bytes, x: float, y: float, w: float, h: float) -> None:
    """``Canvas.drawImage`` decodes the PNG and Flate-compresses its pixels again for every
    document — over half the time of a branded PDF. This places a per-document copy of an
    image object encoded once, the way ``drawImage`` registers its own (ReportLab internals:
    if they ever change, the plain ``drawImage`` path is taken)."""
    try:
        proto = _logo_xobject(data)
        doc = c._doc
        reg = doc.getXObjectName(proto.name)
        if reg not in doc.idToObject:
            obj = copy.copy(proto)
            smask = getattr(obj, "_smask", None)
            c._setXObjects(obj)
            doc.Reference(obj, reg)
            doc.addForm(proto.name, obj)
            if smask is not None:   # the alpha channel of a transparent PNG
                smask = copy.copy(smask)
                c._setXObjects(smask)
                obj.smask = doc.Reference(smask, doc.getXObjectName(smask.name))
                del obj._smask
        c._currentPageHasImages = 1
        c.saveState()
        c.translate(x, y)
        c.scale(w, h)
        c._code.append(f"/{reg} Do")
        c.restoreState()
        c._formsinuse.append(proto.name)
    except (AttributeError, TypeError, ValueError):   # pragma: no cover - a ReportLab internals change
        c.drawImage(_logo_reader(data), x, y, w, h, mask="auto")


class InvoicePdf:
    def __init__(self, view: InvoiceView, brand: Branding) -> None:
        self.v = view
        self.b = brand
        self.accent = brand.accent_rgb
        self.footer = self._footer_lines()
        self.bottom = MARGIN_BOTTOM + 12 + 10 * len(self.footer)

    # -- flow ------------------------------------------------------------------------------
    def render(self) -> bytes:
        blocks = self._blocks()
        pages = self._paginate(blocks)
        buf = io.BytesIO()
        c = Canvas(buf, pagesize=A4, invariant=1, pageCompression=1)
        v = self.v
        c.setTitle(v.title)
        c.setAuthor(self.b.name or "meterbill")
        c.setSubject(f"{v.title} — {v.customer_name}")
        c.setCreator("meterbill")
        pen = Pen(c)
        for n, placed in enumerate(pages, 1):
            for block, top in placed:
                block.draw(pen, top)
            self._draw_footer(pen, n, len(pages))
            c.showPage()
        c.save()
        return buf.getvalue()

    def _paginate(self, blocks: list[Block]) -> list[list[tuple[Block, float]]]:
        header = self._table_header()
        top = PAGE_H - MARGIN_TOP
        pages: list[list[tuple[Block, float]]] = [[]]
        y = top
        for block in blocks:
            need = max(block.height, block.keep)
            room = y - self.bottom
            fresh = y == top
            if need > room and not fresh and (need <= top - self.bottom or block.height > room):
                pages.append([])
                y = top
                if block.table_row:
                    pages[-1].append((header, y))
                    y -= header.height
            pages[-1].append((block, y))
            y -= block.height
        return pages

    def _blocks(self) -> list[Block]:
        out = [self._header(), self._parties(), self._table_header()]
        for line in self.v.lines:
            out.extend(self._line(line))
        tail = [self._totals()]
        if self.v.notes:
            tail.append(self._notes())
        payment = self._payment()
        if payment is not None:
            tail.append(payment)
        together = sum(b.height for b in tail)
        if together < 320:   # the total and how to pay it stay on one page
            tail[0].keep = together
        return out + tail

    # -- blocks ------------------------------------------------------------------------------
    def _header(self) -> Block:
        b, v = self.b, self.v
        logo_h = 0.0
        logo: Logo | None = b.logo if b.logo is not None and b.logo.embeddable else None
        lw = lh = 0.0
        if logo is not None and logo.width and logo.height:
            lh = min(46.0, 150.0 * logo.height / logo.width)
            lw = lh * logo.width / logo.height
            logo_h = lh + 8
        name_lines = wrap(b.name, 12.5, 280, bold=True) if b.name else []
        left_h = logo_h + 15 * len(name_lines) + 11 * len(b.address_lines)
        notice_h = 26.0 if v.notice else 0.0
        height = max(left_h, 66.0) + 14 + notice_h

        def draw(pen: Pen, top: float) -> None:
            y = top
            if logo is not None:
                assert logo.data is not None
                draw_logo(pen.c, logo.data, MARGIN_X, y - lh, lw, lh)
                y -= logo_h
            for line in name_lines:
                pen.text(MARGIN_X, y - 11, line, 12.5, bold=True)
                y -= 15
            for line in b.address_lines:
                pen.text(MARGIN_X, y - 9, line, 8.5, color=MUTED)
                y -= 11
            pen.text(RIGHT, top - 22, v.heading.upper(), 24, bold=True, color=self.accent, align="right")
            pen.text(RIGHT, top - 40, v.number or ("Number pending" if v.status == "finalizing" else "Draft"), 12, bold=True, align="right")
            self._badge(pen, top - 62)
            y = top - max(left_h, 66.0) - 6
            pen.rule(MARGIN_X, RIGHT, y, self.accent, 1.6)
            if v.notice:
                c = pen.c
                c.setFillColorRGB(0.976, 0.98, 0.984)
                c.rect(MARGIN_X, y - 24, CONTENT_W, 18, stroke=0, fill=1)
                c.setFillColorRGB(*self.accent)
                c.rect(MARGIN_X, y - 24, 3, 18, stroke=0, fill=1)
                pen.text(MARGIN_X + 10, y - 18, v.notice, SMALL)

        return Block(height, draw)

    def _badge(self, pen: Pen, baseline: float) -> None:
        label = self.v.status_label.upper()
        ink, fill, stroke = BADGES.get(self.v.status, BADGE_GREY)
        w = width(label, TINY, bold=True) + 16
        c = pen.c
        c.setFillColorRGB(*fill)
        c.setStrokeColorRGB(*stroke)
        c.setLineWidth(0.8)
        c.roundRect(RIGHT - w, baseline - 4, w, 14, 7, stroke=1, fill=1)
        pen.text(RIGHT - w / 2, baseline + 0.5, label, TINY, bold=True, color=ink, align="center")

    def _parties(self) -> Block:
        v = self.v
        left = [(s, True) for s in wrap(v.customer_name, 10.5, 240, bold=True)]
        left += [(s, False) for s in ([v.customer_email] if v.customer_email else []) + list(v.customer_lines)]
        facts = v.facts
        height = max(14 + 13 * len(left), 13.0 * len(facts)) + 22

        def draw(pen: Pen, top: float) -> None:
            pen.text(MARGIN_X, top - 9, v.party_label.upper(), TINY, bold=True, color=self.accent)
            y = top - 23
            for s, bold in left:
                pen.text(MARGIN_X, y, s, 10.5 if bold else BODY, bold=bold)
                y -= 13
            y = top - 9
            label_x = RIGHT - 230
            for f in facts:
                pen.text(label_x, y, f.label, BODY, color=MUTED)
                pen.text(RIGHT, y, f.value, BODY, bold=f.strong, align="right")
                y -= 13

        return Block(height, draw)

    def _table_header(self) -> Block:
        cur = self.v.currency

        def draw(pen: Pen, top: float) -> None:
            y = top - 10
            for x, label, align in ((MARGIN_X, "DESCRIPTION", "left"), (COL_QTY_R, "QUANTITY", "right"),
                                    (COL_UNIT_R, "UNIT PRICE", "right"), (RIGHT, f"AMOUNT ({cur})", "right")):
                pen.text(x, y, label, TINY, bold=True, color=self.accent, align=align)
            pen.rule(MARGIN_X, RIGHT, top - 15, self.accent, 1.2)

        return Block(21.0, draw)

    def _line(self, line: LineRow) -> list[Block]:
        desc = wrap(line.description, BODY, DESC_W)
        qty = wrap(line.quantity, BODY, QTY_W)
        unit = wrap(line.unit_price, BODY, UNIT_W)
        amount = wrap(line.amount, BODY, AMOUNT_W)
        rows = max(len(desc), len(qty), len(unit), len(amount))
        subs: list[Block] = []
        for t in line.tiers:
            label = wrap(t.expression, SMALL, COL_UNIT_R - MARGIN_X - 22)
            subs.append(self._sub(label, t.amount))
        for note in line.notes:
            subs.append(self._sub(wrap(note, SMALL, CONTENT_W - 14), None))
        height = 8 + 12 * rows

        def draw(pen: Pen, top: float) -> None:
            for i in range(rows):
                y = top - 13 - 12 * i
                if i < len(desc):
                    pen.text(MARGIN_X, y, desc[i])
                if i < len(qty):
                    pen.text(COL_QTY_R, y, qty[i], align="right")
                if i < len(unit):
                    pen.text(COL_UNIT_R, y, unit[i], align="right",
                             color=MUTED if line.unit_price in ("see tiers", "see breakdown") else INK)
                if i < len(amount):
                    pen.text(RIGHT, y, amount[i], align="right")

        def rule(pen: Pen, top: float) -> None:
            pen.rule(MARGIN_X, RIGHT, top - 4, HAIRLINE, 0.6)

        group = height + sum(s.height for s in subs) + 6
        blocks = [Block(height, draw, table_row=True, keep=group if group < 220 else height)]
        blocks += subs
        blocks.append(Block(6.0, rule, table_row=True))
        return blocks

    def _sub(self, label: list[str], amount: str | None) -> Block:
        def draw(pen: Pen, top: float) -> None:
            for i, s in enumerate(label):
                pen.text(MARGIN_X + 14, top - 9 - 10 * i, s, SMALL, color=MUTED)
            if amount is not None:
                pen.text(RIGHT, top - 9, amount, SMALL, color=MUTED, align="right")

        return Block(2 + 10 * len(label), draw, table_row=True)

    def _totals(self) -> Block:
        v = self.v
        x_label = RIGHT - 240
        rows = [(wrap(t.label, BODY, 170), t.amount) for t in v.before_total]
        after = [(wrap(t.label, BODY, 170), t.amount) for t in v.after_total]
        height = 14 + 14 * sum(len(r[0]) for r in rows) + 26 + 14 * sum(len(r[0]) for r in after) + (
            22 if v.amount_due is not None else 0)

        def draw_rows(pen: Pen, y: float, rows: list[tuple[list[str], str]]) -> float:
            for label, amount in rows:
                for i, s in enumerate(label):
                    pen.text(x_label, y, s, BODY, color=MUTED)
                    if i == 0:
                        pen.text(RIGHT, y, amount, BODY, align="right")
                    y -= 14
            return y

        def draw(pen: Pen, top: float) -> None:
            y = draw_rows(pen, top - 16, rows)
            pen.rule(x_label, RIGHT, y + 6, self.accent, 1.4)
            pen.text(x_label, y - 9, "Total", 12, bold=True)
            pen.text(RIGHT, y - 9, f"{v.currency} {v.total}", 12, bold=True, align="right")
            y = draw_rows(pen, y - 9 - 20, after)
            if v.amount_due is not None:
                pen.rule(x_label, RIGHT, y + 8, HAIRLINE, 0.6)
                pen.text(x_label, y - 6, "Amount due", 12, bold=True, color=self.accent)
                pen.text(RIGHT, y - 6, f"{v.currency} {v.amount_due}", 12, bold=True, color=self.accent,
                         align="right")

        return Block(height, draw)

    def _notes(self) -> Block:
        lines = [s for note in self.v.notes for s in wrap(note, SMALL, CONTENT_W)]

        def draw(pen: Pen, top: float) -> None:
            for i, s in enumerate(lines):
                pen.text(MARGIN_X, top - 10 - 10 * i, s, SMALL, color=MUTED)

        return Block(8 + 10 * len(lines), draw)

    def _payment(self) -> Block | None:
        v, b = self.v, self.b
        if not v.payable or not (b.bank_lines or v.payment_url):
            return None
        ask = f"Please pay {v.currency} {v.amount_due or v.total} by {v.due}" + (
            f", quoting {v.number} as the payment reference." if v.number else ".")
        intro = wrap(ask, BODY, CONTENT_W)
        bank = [s for line in b.bank_lines for s in wrap(line, BODY, CONTENT_W)]
        url = v.payment_url
        height = 30 + 12 * len(intro) + (6 + 12 * len(bank) if bank else 0) + (20 if url else 0)

        def draw(pen: Pen, top: float) -> None:
            y = top - 24
            pen.text(MARGIN_X, y, "PAYMENT", TINY, bold=True, color=self.accent)
            pen.rule(MARGIN_X, RIGHT, y - 4, self.accent, 0.8)
            y -= 18
            for s in intro:
                pen.text(MARGIN_X, y, s)
                y -= 12
            if bank:
                y -= 6
                for s in bank:
                    pen.text(MARGIN_X, y, s)
                    y -= 12
            if url:
                y -= 8
                w = pen.text(MARGIN_X, y, "Pay by card: ", bold=True)
                shown = url if len(url) <= 90 else url[:87] + "..."
                uw = pen.text(MARGIN_X + w, y, shown, color=self.accent)
                pen.c.linkURL(url, (MARGIN_X, y - 3, MARGIN_X + w + uw, y + 10), relative=0)

        return Block(height, draw)

    # -- footer ----------------------------------------------------------------------------
    def _footer_lines(self) -> list[str]:
        lines = [s for line in self.b.footer_lines for s in wrap(line, TINY, CONTENT_W - 80)]
        if self.b.support_email:
            lines.append(f"Questions about this {self.v.heading.lower()}? {self.b.support_email}")
        return lines

    def _draw_footer(self, pen: Pen, page: int, pages: int) -> None:
        top = MARGIN_BOTTOM + 10 * len(self.footer) + 4
        pen.rule(MARGIN_X, RIGHT, top, HAIRLINE, 0.6)
        y = top - 11
        for s in self.footer:
            pen.text(MARGIN_X, y, s, TINY, color=MUTED)
            y -= 10
        pen.text(RIGHT, top - 11, f"Page {page} of {pages}", TINY, color=MUTED, align="right")
        pen.text(RIGHT, top - 21, self.v.number or self.v.id, TINY, color=MUTED, align="right")


def render_view(view: InvoiceView, branding: Branding) -> bytes:
    return InvoicePdf(view, branding).render()


def render_pdf(doc: Mapping[str, Any], branding: Branding) -> bytes:
    return render_view(invoice_view(doc), branding)


def render_credit_note_pdf(doc: Mapping[str, Any], branding: Branding) -> bytes:
    return render_view(credit_note_view(doc), branding)
