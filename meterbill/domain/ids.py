"""Identifiers chosen by clients: one grammar, checked the same way wherever an id arrives.

An **id** (event id, customer id; CloudEvents ``id`` and ``subject``) is sent in event bodies
and later named as one URL path segment (``/v1/events/{id}``, ``/v1/customers/{id}``). The
rule is therefore the intersection of both: an id ingest accepts can always be created,
read and billed through the API, and the reverse.

* 1 to ``MAX_ID`` characters;
* letters and digits of any script (``str.isalnum``), a space, or one of ``ID_PUNCTUATION``;
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
# The grammar as a regular expression (Python's: its Unicode \w is exactly str.isalnum() plus '_'),
# for the OpenAPI document; is_id stays the check. tests/unit/test_ids.py proves them equal.
_ID_CHAR = r"[\w" + ID_PUNCTUATION.replace("-", "").replace("_", "") + "-]"
_ID_CHAR_OR_SPACE = r"[\w " + ID_PUNCTUATION.replace("-", "").replace("_", "") + "-]"
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
    return all(c in _ASCII_ID or c.isalnum() for c in value)


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
