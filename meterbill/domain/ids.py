"""Identifiers chosen by clients: one grammar, checked the same way wherever an id arrives.

An **id** (event id, customer id; CloudEvents ``id`` and ``subject``) is sent in event bodies
and later named as one URL path segment (``/v1/events/{id}``, ``/v1/customers/{id}``). The
rule is therefore the intersection of both: an id ingest accepts can always be created,
read and billed through the API, and the reverse.

* 1 to ``MAX_ID`` characters;
* letters and digits of any script (``str.isalnum``, less the "other numbers" ¹ ½ ①), a space, or one of
  ``ID_PUNCTUATION``;
* no space at the start or at the end;
* not ``.`` or ``..``: URL clients remove such dot segments from a path (RFC 3986, 5.2.4).

Left out on purpose: ``/ ? # %`` and ``\\``, quotes, control and format characters and other
symbols. API Gateway's HTTP API decodes the path before routing, so such a character cannot
be addressed inside one path segment (``%2F`` becomes ``/``, ``?`` and ``#`` end the path).

A **name** (event ``type``, a meter's ``event_type``, CloudEvents ``source``) is never part of
a path: any printable text of 1 to ``MAX_ID`` characters with no space at either end.

Codes of catalog objects (meters, plans, tax rates, discounts, grants) have their own, narrower
grammar: ``meters.check_code``.
"""

from __future__ import annotations

from meterbill.domain.errors import InvalidField

MAX_ID = 128
ID_PUNCTUATION = "_-.~:@+=,;!*'()$&"
_ASCII_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 " + ID_PUNCTUATION)
DOT_SEGMENTS = frozenset({".", ".."})
ID_RULE = (f"must be 1 to {MAX_ID} letters, digits, spaces or {' '.join(ID_PUNCTUATION)} "
           "(no space at the start or end; not . or ..)")
# "Other numbers" (Unicode category No: ¹ ½ ① …, Unicode 14 ranges): str.isalnum() and Python's \w count
# them, the \w of JSON Schema validators (ECMA-262 / Rust regex: letters, marks, decimal digits) does
# not, so an id holding one matched the OpenAPI pattern for one and not for the other. Ids leave them out.
_OTHER_NUMBERS = (
    (0xB2, 0xB3), (0xB9, 0xB9), (0xBC, 0xBE), (0x9F4, 0x9F9), (0xB72, 0xB77), (0xBF0, 0xBF2), (0xC78, 0xC7E),
    (0xD58, 0xD5E), (0xD70, 0xD78), (0xF2A, 0xF33), (0x1369, 0x137C), (0x17F0, 0x17F9), (0x19DA, 0x19DA),
    (0x2070, 0x2070), (0x2074, 0x2079), (0x2080, 0x2089), (0x2150, 0x215F), (0x2189, 0x2189),
    (0x2460, 0x249B), (0x24EA, 0x24FF), (0x2776, 0x2793), (0x2CFD, 0x2CFD), (0x3192, 0x3195),
    (0x3220, 0x3229), (0x3248, 0x324F), (0x3251, 0x325F), (0x3280, 0x3289), (0x32B1, 0x32BF),
    (0xA830, 0xA835), (0x10107, 0x10133), (0x10175, 0x10178), (0x1018A, 0x1018B), (0x102E1, 0x102FB),
    (0x10320, 0x10323), (0x10858, 0x1085F), (0x10879, 0x1087F), (0x108A7, 0x108AF), (0x108FB, 0x108FF),
    (0x10916, 0x1091B), (0x109BC, 0x109BD), (0x109C0, 0x109CF), (0x109D2, 0x109FF), (0x10A40, 0x10A48),
    (0x10A7D, 0x10A7E), (0x10A9D, 0x10A9F), (0x10AEB, 0x10AEF), (0x10B58, 0x10B5F), (0x10B78, 0x10B7F),
    (0x10BA9, 0x10BAF), (0x10CFA, 0x10CFF), (0x10E60, 0x10E7E), (0x10F1D, 0x10F26), (0x10F51, 0x10F54),
    (0x10FC5, 0x10FCB), (0x11052, 0x11065), (0x111E1, 0x111F4), (0x1173A, 0x1173B), (0x118EA, 0x118F2),
    (0x11C5A, 0x11C6C), (0x11FC0, 0x11FD4), (0x16B5B, 0x16B61), (0x16E80, 0x16E96), (0x1D2E0, 0x1D2F3),
    (0x1D360, 0x1D378), (0x1E8C7, 0x1E8CF), (0x1EC71, 0x1ECAB), (0x1ECAD, 0x1ECAF), (0x1ECB1, 0x1ECB4),
    (0x1ED01, 0x1ED2D), (0x1ED2F, 0x1ED3D), (0x1F100, 0x1F10C),
)
_NO = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in _OTHER_NUMBERS)
_NO_SET = frozenset(c for a, b in _OTHER_NUMBERS for c in range(a, b + 1))
# The grammar as a regular expression (Python's: its Unicode \w is exactly str.isalnum() plus '_'),
# for the OpenAPI document; is_id stays the check. tests/unit/test_ids.py proves them equal.
_ID_CHAR = rf"(?:(?![{_NO}])[\w" + ID_PUNCTUATION.replace("-", "").replace("_", "") + "-])"
_ID_CHAR_OR_SPACE = rf"(?:(?![{_NO}])[\w " + ID_PUNCTUATION.replace("-", "").replace("_", "") + "-])"
ID_PATTERN = (rf"^(?!\.\.?$){_ID_CHAR}(?:{_ID_CHAR_OR_SPACE}{{0,{MAX_ID - 2}}}{_ID_CHAR})?$")
NAME_RULE = f"must be 1 to {MAX_ID} printable characters with no space at the start or end"


def is_id(value: object) -> bool:
    """The id grammar as a predicate (hot path: ASCII ids cost one set check)."""
    if type(value) is not str or not 0 < len(value) <= MAX_ID or value[0] == " " or value[-1] == " ":
        return False
    if value in DOT_SEGMENTS:
        return False
    if value.isascii():
        return _ASCII_ID.issuperset(value)
    return all(c in _ASCII_ID or (c.isalnum() and ord(c) not in _NO_SET) for c in value)


def is_name(value: object) -> bool:
    return (type(value) is str and 0 < len(value) <= MAX_ID and value.isprintable()
            and not value[0].isspace() and not value[-1].isspace())


def id_problem(value: object, *, name: bool = False) -> tuple[str, str] | None:
    """``(code, problem)`` for a value that is not an id (or, with ``name``, not a name)."""
    if (is_name if name else is_id)(value):
        return None
    if value is None:
        return "required", "is required"
    if type(value) is not str:
        return "invalid_type", "must be a string"
    if not 0 < len(value) <= MAX_ID:
        return "invalid_length", f"must be 1 to {MAX_ID} characters"
    return "invalid_characters", NAME_RULE if name else ID_RULE


def check_id(value: object, field: str = "id") -> str:
    problem = id_problem(value)
    if problem is not None:
        raise InvalidField(field, problem[1], problem[0])
    return value  # type: ignore[return-value]


def check_name(value: object, field: str) -> str:
    problem = id_problem(value, name=True)
    if problem is not None:
        raise InvalidField(field, problem[1], problem[0])
    return value  # type: ignore[return-value]
