"""Which usage a rebuild owns (domain/rebuilds.py): skipped, pending or applied by the aggregator."""

from __future__ import annotations

from meterbill.domain.rebuilds import OWNS_S, Rebuild, governing, route

MARK = 1_800_000_000_000
R1 = Rebuild("r1", "tokens", None, 0, 10**12, MARK, True)


def test_route_by_accepted_time_and_item_state() -> None:
    assert route(None, 5, None) == "apply"
    assert route(R1, MARK - 1, None) == "skip"            # before the mark: the rebuild counts it
    assert route(R1, None, None) == "skip"
    assert route(R1, MARK, None) == "pending"             # item not rewritten by the rebuild yet
    assert route(R1, MARK, "r0") == "pending"
    assert route(R1, MARK, "r1") == "apply"
    done = Rebuild("r1", "tokens", None, 0, 10**12, MARK, False)
    assert route(done, MARK - 1, None) == "skip" and route(done, MARK, None) == "apply"


def test_the_covering_rebuild_with_the_latest_mark_governs_while_it_owns_events() -> None:
    c = Rebuild("c", "tokens", "acme", 900, 1800, MARK + 5, True)
    assert governing([R1, c], "tokens", "acme", 900, MARK) is c
    assert governing([R1, c], "tokens", "acme", 1800, MARK) is R1           # outside c's range
    assert governing([R1, c], "tokens", "beta", 900, MARK) is R1            # another customer
    assert governing([R1, c], "calls", "acme", 900, MARK) is None           # another meter
    assert governing([R1], "tokens", "acme", 900, MARK + OWNS_S * 1000) is None   # expired
    assert R1.overlaps(c) and not c.overlaps(Rebuild("d", "tokens", "beta", 0, 900, MARK, True))
