"""Reading a JSON request body strictly (pure): a key repeated in one object and nesting deeper than
``MAX_DEPTH`` are errors naming where, never silently "the last one wins" or a RecursionError.

``strict_loads`` is the deserializer for every JSON body of the API (Powertools'
``json_body_deserializer``); ``events.loads`` reads event batches with the same rules, exact
decimals, and a repeated key inside one event rejecting only that event."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from meterbill.domain.errors import InvalidField

__all__ = ["DUPLICATE_PROBLEM", "MAX_DEPTH", "DuplicateKeys", "check_depth", "duplicate_path", "pairs_hook", "strict_loads"]

MAX_DEPTH = 64  # nested objects / arrays; our deepest body (a plan's tier) is 4 levels
DUPLICATE_PROBLEM = "appears more than once in one JSON object; send each key once"


class DuplicateKeys(dict[str, Any]):
    """A JSON object that named ``duplicate`` (its first repeated key) more than once."""

    duplicate: str = ""


def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a plain dict, or a :class:`DuplicateKeys` marking the repeat."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = DuplicateKeys(obj)
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_depth(text: str, field: str = "body") -> None:
    """``InvalidField`` when objects / arrays nest deeper than ``MAX_DEPTH`` (checked on the text,
    before the recursive parser sees it)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise InvalidField(field, f"nests JSON objects and arrays deeper than {MAX_DEPTH} levels", "too_deep")


def duplicate_path(doc: Any, path: str = "") -> str | None:
    """The path (``charges[0].tiers[1].unit_amount``) of the first repeated key in ``doc``, in
    document order; None when there is none."""
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            if type(item) is DuplicateKeys:
                return f"{where}.{item.duplicate}" if where else item.duplicate
            stack.extend((v, f"{where}.{k}" if where else k) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((item[i], f"{where}[{i}]") for i in reversed(range(len(item))))
    return None


def as_text(body: str | bytes) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidField("body", "is not UTF-8 encoded JSON") from None


def strict_loads(body: str | bytes, *, parse_float: Callable[[str], Any] | None = None) -> Any:
    """JSON text -> Python, refusing a key repeated in one object (``InvalidField`` naming the key's
    path, code ``duplicate_key``) and nesting deeper than ``MAX_DEPTH`` (field ``body``, code
    ``too_deep``). Invalid JSON raises ``json.JSONDecodeError`` as ``json.loads`` does."""
    text = as_text(body)
    check_depth(text)
    repeated: list[DuplicateKeys] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = pairs_hook(pairs)
        if type(obj) is DuplicateKeys:
            repeated.append(obj)
        return obj

    doc = json.loads(text, object_pairs_hook=hook, parse_float=parse_float)
    if repeated:  # rare: find where, in document order
        raise InvalidField(duplicate_path(doc) or repeated[0].duplicate, DUPLICATE_PROBLEM, "duplicate_key")
    return doc
