"""Size limits of what clients store (pure): every free-text field, metadata, lists, and whole
documents, so that no catalog, customer or account item can approach DynamoDB's 400 KB item limit
(docs/decisions.md, "Input limits and the amount grammar", 2026-12-01).

Checked when a client saves; items stored earlier are read as they are (a limit never makes a
stored meter, plan or customer unreadable)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import MAX_ID

MAX_NAME = 200            # names and display names (meter, plan, charge, customer, tax rate, discount, window)
MAX_UNIT = 50             # a unit ("tokens", "GB-hours")
MAX_REASON = 200          # a credit grant's reason
MAX_MEMO = 500            # a credit note's memo
MAX_ADDRESS_FIELD = 200   # each address line, city, state, postal code
MAX_PROPERTY = MAX_ID     # an event property name (a meter's property, group_by, filter keys): events' key limit
MAX_VALUE = 1024          # a property value a meter filters on or a matrix row matches: events' string limit
MAX_FILTER_KEYS = 10
MAX_FILTER_VALUES = 100   # accepted values per filter key
MAX_METADATA = 50         # customer metadata: keys (Stripe's limits)
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
MAX_TAGS = 10             # customer tags: segment labels the reports group by (group_by=tag:<key>)
MAX_TAG_VALUE = 64
TAG_KEY = r"[a-z][a-z0-9_]{0,31}"
MAX_CHARGES = 100         # charges per plan
MAX_ROWS = 100            # tiers, matrix prices, time-of-use windows per charge
MAX_HOLIDAYS = 400
MAX_PLAN_BYTES = 100_000      # a plan document as compact UTF-8 JSON (each saved version is another item)
MAX_CUSTOMER_BYTES = 200_000  # a customer profile, with its plan history and price overrides


def valid_text(text: str) -> bool:
    """Unicode that UTF-8 can carry (DynamoDB stores UTF-8): no unpaired surrogates."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: object, field: str, max_chars: int, *, required: bool = False) -> str | None:
    """``value`` as text of at most ``max_chars`` characters (None when absent and not required)."""
    if value is None:
        if required:
            raise InvalidField(field, "is required")
        return None
    if type(value) is not str:
        raise InvalidField(field, "must be a string")
    if len(value) > max_chars:
        raise InvalidField(field, f"must be at most {max_chars} characters (got {len(value)})", "too_long")
    if not valid_text(value):
        raise InvalidField(field, "must be valid Unicode (no unpaired surrogates)")
    return value


def check_count(items: object, field: str, most: int, what: str) -> None:
    if isinstance(items, (list, dict)) and len(items) > most:
        raise InvalidField(field, f"may hold at most {most} {what} (got {len(items)})", "too_many")


def _object(value: object, field: str, most: int, not_an_object: str) -> dict[str, Any]:
    """A JSON object of at most ``most`` keys ({} for null)."""
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidField(field, not_an_object)
    check_count(value, field, most, "keys")
    return value


def check_metadata(value: object, field: str = "metadata") -> dict[str, str]:
    """Customer metadata: at most 50 keys of 1-40 characters, string values of at most 500."""
    value = _object(value, field, MAX_METADATA, "must be an object of string values")
    for key, item in value.items():
        if not 0 < len(key) <= MAX_METADATA_KEY or not valid_text(key):
            raise InvalidField(field, f"keys must be 1 to {MAX_METADATA_KEY} characters (got {len(key)})",
                               "too_long")
        check_text(item, f"{field}.{key}", MAX_METADATA_VALUE)
    return value


def check_tags(value: object, field: str = "tags") -> dict[str, str]:
    """Customer tags: segment labels such as {"segment": "enterprise", "region": "eu"}; at most 10
    keys (lowercase letters, digits, '_', starting with a letter, up to 32), values 1 to 64
    printable characters. Reports group customers by one key (``group_by=tag:<key>``)."""
    value = _object(value, field, MAX_TAGS, "must be an object of string labels, e.g. {\"segment\": \"enterprise\"}")
    for key, item in value.items():
        if not re.fullmatch(TAG_KEY, key):
            raise InvalidField(f"{field}.{key[:40]}", "a tag key must be lowercase letters, digits or '_', "
                                                      "starting with a letter, at most 32 characters")
        if type(item) is not str or not 0 < len(item) <= MAX_TAG_VALUE or not item.isprintable() or item != item.strip():
            raise InvalidField(f"{field}.{key}", f"must be a label of 1 to {MAX_TAG_VALUE} printable characters "
                                                  "without leading or trailing spaces")
    return dict(value)


def _size(doc: Any) -> int:
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def check_document(doc: Mapping[str, Any], max_bytes: int, what: str, prefix: str = "") -> None:
    """Every string of ``doc`` (keys too) storable as UTF-8, and the whole at most ``max_bytes`` as
    compact JSON (close to its DynamoDB item size); an error names the largest top-level field."""
    bad = _bad_text(doc, prefix.rstrip("."))
    if bad is not None:
        raise InvalidField(bad, "must be valid Unicode (no unpaired surrogates)")
    size = _size(doc)
    if size > max_bytes:
        largest = max(doc, key=lambda k: _size(doc[k])) if doc else ""
        raise InvalidField(f"{prefix}{largest}", f"makes the {what} {size:,} bytes as JSON; at most "
                                                 f"{max_bytes:,} can be stored", "too_large")


def _bad_text(value: Any, path: str) -> str | None:
    """The path of the first string (or key) that UTF-8 cannot encode, else None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not valid_text(item):
                return where
        elif isinstance(item, Mapping):
            for key, child in reversed(list(item.items())):
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and not valid_text(key):
                    return where or "body"
                stack.append((child, child_path))
        elif isinstance(item, (list, tuple)):
            for i in reversed(range(len(item))):
                stack.append((item[i], f"{where}[{i}]"))
    return None
