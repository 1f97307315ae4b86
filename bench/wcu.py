"""DynamoDB item size and write capacity units, by DynamoDB's published sizing rules.

Item size = sum over attributes of (UTF-8 length of the name + size of the value):
S = UTF-8 bytes; B = raw bytes; N = ceil(significant digits / 2) + 1 (leading and trailing
zeros trimmed); BOOL / NULL = 1; M / L = 3 + contents + 1 per element (a map's contents
include its keys); SS / NS / BS = sum of the members. One write = ceil(size / 1 KB) WCU.
"""

from __future__ import annotations

import base64
import math
from typing import Any


def number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "")
    digits = digits.strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(av: dict[str, Any]) -> int:
    ((tag, v),) = av.items()
    if tag == "S":
        return len(v.encode())
    if tag == "N":
        return number_size(v)
    if tag == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    if tag == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if tag == "SS":
        return sum(len(s.encode()) for s in v)
    if tag == "NS":
        return sum(number_size(s) for s in v)
    if tag == "BS":
        return sum(len(base64.b64decode(b)) for b in v)
    raise ValueError(f"unknown attribute type {tag}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(av) for name, av in item.items())


def write_units(item: dict[str, Any]) -> int:
    return max(1, math.ceil(item_size(item) / 1024))
