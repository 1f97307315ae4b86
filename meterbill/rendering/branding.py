"""Branding for invoice documents: seller name, address, logo, accent colour, footer, payment
instructions. Built once from :class:`~meterbill.config.Settings`; immutable afterwards.

The logo is a local file path, a ``data:image/png|jpeg;base64,…`` URI, or an ``https://`` URL.
Files and data URIs are read once and embedded (HTML as a data URI, PDF as an image); an https
URL is only referenced from the HTML (a PDF renderer never fetches from the network). Only PNG
and JPEG are accepted, recognised by their signature, not by the file name.
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from meterbill.config import Settings, accent_colour

log = logging.getLogger(__name__)

MAX_LOGO_BYTES = 2 * 1024 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrandingError(ValueError):
    """The configured branding cannot be used (a bad logo)."""


@dataclass(frozen=True, slots=True)
class Logo:
    mime: str | None          # image/png | image/jpeg; None for a remote (https) logo
    data: bytes | None        # embedded bytes; None for a remote logo
    url: str | None           # https URL (HTML only); None for an embedded logo
    width: int = 0            # pixels (0 when unknown: remote)
    height: int = 0
    src: str = ""             # what an HTML <img src> gets: the https URL or a data: URI (built once)

    @property
    def embeddable(self) -> bool:
        return self.data is not None


@dataclass(frozen=True, slots=True)
class Branding:
    name: str = ""
    address_lines: tuple[str, ...] = ()
    logo: Logo | None = None
    accent: str = "#1f4e79"
    footer_lines: tuple[str, ...] = ()
    bank_lines: tuple[str, ...] = ()
    support_email: str | None = None

    @property
    def accent_rgb(self) -> tuple[float, float, float]:
        """The accent colour as 0..1 floats for the PDF colour operators (not money)."""
        h = self.accent.lstrip("#")
        return int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255

    @classmethod
    def from_settings(cls, settings: Settings) -> Branding:
        """A logo that cannot be loaded is logged and left out: an invoice without its logo
        beats no invoice. Everything else was validated when the settings were read."""
        logo = None
        if settings.brand_logo:
            try:
                logo = load_logo(settings.brand_logo)
            except BrandingError as exc:
                log.warning("METERBILL_BRAND_LOGO ignored: %s", exc)
        return cls(name=settings.brand_name.strip(), address_lines=_lines(settings.brand_address),
                   logo=logo, accent=accent_colour(settings.brand_accent),
                   footer_lines=_lines(settings.brand_footer), bank_lines=_lines(settings.bank_details),
                   support_email=(settings.support_email or "").strip() or None)


def _lines(text: str | None) -> tuple[str, ...]:
    return tuple(line.strip() for line in (text or "").replace("\\n", "\n").splitlines() if line.strip())


def load_logo(value: str) -> Logo:
    """Parse a logo setting; raises :class:`BrandingError` with the reason."""
    value = value.strip()
    if value.startswith("https://"):
        if any(c in value for c in " \"'<>\\\n\r\t"):
            raise BrandingError("the logo URL contains characters that are not allowed in a URL")
        return Logo(mime=None, data=None, url=value, src=value)
    if value.startswith("http://"):
        raise BrandingError("a logo URL must use https")
    if value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise BrandingError("a data: URI logo must be base64-encoded ('data:image/png;base64,…')")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BrandingError("the data: URI logo is not valid base64") from None
    else:
        path = Path(value).expanduser()
        try:
            if path.stat().st_size > MAX_LOGO_BYTES:
                raise BrandingError(f"logo file {path} is larger than {MAX_LOGO_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise BrandingError(f"cannot read logo file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_LOGO_BYTES:
        raise BrandingError(f"the logo is larger than {MAX_LOGO_BYTES} bytes")
    mime, width, height = image_info(data)
    return Logo(mime=mime, data=data, url=None, width=width, height=height,
                src=f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}")


def image_info(data: bytes) -> tuple[str, int, int]:
    """(mime, width, height) of PNG or JPEG bytes, from the file's own header."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        if width and height:
            return "image/png", width, height
        raise BrandingError("the PNG logo has no size")
    if data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
        if size is not None:
            return "image/jpeg", *size
        raise BrandingError("the JPEG logo is truncated or has no frame header")
    raise BrandingError("the logo must be a PNG or JPEG image")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return (width, height) if width and height else None
        i += 2 + length
    return None
