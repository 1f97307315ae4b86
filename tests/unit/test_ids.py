"""The one id grammar (meterbill/domain/ids.py): the check and its regular expression (published in
the OpenAPI document) accept exactly the same strings."""

from __future__ import annotations

import re
import sys

import pytest

from meterbill.domain.ids import ID_PATTERN, MAX_ID, is_id

PATTERN = re.compile(ID_PATTERN)


def test_pattern_and_check_agree_on_every_code_point_alone_and_inside() -> None:
    differ = [hex(c) for c in range(sys.maxunicode + 1)
              if is_id(chr(c)) != bool(PATTERN.fullmatch(chr(c)))
              or is_id(f"a{chr(c)}b") != bool(PATTERN.fullmatch(f"a{chr(c)}b"))]
    assert differ == []


@pytest.mark.parametrize("value", ["acme", "Café Ünïcode", "a b", "x" * MAX_ID, "in_3f2a", "a..b", "...", "_",
                                   "o'brien (eu) $&", "顧客-42"])
def test_ids(value: str) -> None:
    assert is_id(value) and PATTERN.fullmatch(value) and PATTERN.match(value)


@pytest.mark.parametrize("value", ["", ".", "..", " a", "a ", "x" * (MAX_ID + 1), "a/b", "a#b", "a?b", "a%41",
                                   "a\\b", 'a"b', "a\nb", "a\n", "\U0001F600", "a\tb"])
def test_not_ids(value: str) -> None:
    assert not is_id(value) and not PATTERN.fullmatch(value)


def test_code_pattern_is_check_code() -> None:
    from itertools import product

    from meterbill.domain.errors import InvalidField
    from meterbill.domain.meters import CODE_PATTERN, check_code

    def valid(code: str) -> bool:
        try:
            check_code(code)
        except InvalidField:
            return False
        return True

    pattern = re.compile(CODE_PATTERN)
    samples = ["".join(p) for n in range(1, 4) for p in product("a.-_/ é", repeat=n)]
    samples += ["x" * 64, "x" * 65, "." * 64, "." * 65, ".." + "x" * 62, ".." + "x" * 63, "." + "x" * 63]
    assert [s for s in samples if valid(s) != bool(pattern.fullmatch(s))] == []
