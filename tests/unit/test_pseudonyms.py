"""Which usage values an erasure replaces, and by what (meterbill/domain/pseudonyms.py)."""

from __future__ import annotations

from decimal import Decimal

from meterbill.domain.meters import parse_meter
from meterbill.domain.pseudonyms import Pseudonyms, kept_values

GPU = parse_meter("gpu", {"event_type": "gpu.run", "aggregation": "sum", "property": "seconds",
                          "group_by": ["gpu", "user"], "filter": {"region": ["eu"]}})
USERS = parse_meter("users", {"event_type": "app.login", "aggregation": "unique_count", "property": "user"})
PLANS = [{"charges": [{"meter": "gpu", "model": "matrix", "dimensions": ["gpu", "user"],
                       "prices": [{"match": {"gpu": "h100", "user": None}, "unit_amount": "1"}]}]},
         {"charges": [{"meter": "gpu", "model": "matrix", "dimensions": ["gpu", "user"],  # an older version
                       "prices": [{"match": {"gpu": "a10", "user": None}, "unit_amount": "1"}]}]}]
OVERRIDES = [{"charges": {"gpu": {"prices": [{"match": {"gpu": "l4", "user": None}, "unit_amount": "2"}]}}}]


def pseudonyms(key: bytes = b"k" * 32) -> Pseudonyms:
    return Pseudonyms(key, kept_values([GPU, USERS], PLANS, OVERRIDES))


def test_price_list_values_and_quantities_are_kept_everything_else_replaced() -> None:
    p = pseudonyms()
    out = p.properties("gpu.run", {"gpu": "h100", "user": "alice@x.example", "seconds": Decimal("12.5"),
                                   "region": "eu", "note": "call +49 30 123", "ticket": 4711, "ok": True,
                                   "none": None})
    assert (out["gpu"], out["seconds"], out["region"], out["ok"], out["none"]) == ("h100", Decimal("12.5"), "eu",
                                                                                   True, None)
    for name in ("user", "note", "ticket"):
        assert str(out[name]).startswith("erased:") and len(out[name]) == len("erased:") + 20, name
    # a gpu the price list does not name, and a region no filter names, are replaced too
    other = p.properties("gpu.run", {"gpu": "t4", "region": "us", "seconds": "7"})
    assert other["gpu"].startswith("erased:") and other["region"].startswith("erased:") and other["seconds"] == "7"
    # older plan versions and the customer's overrides count as price list
    assert p.properties("gpu.run", {"gpu": "a10"})["gpu"] == "a10"
    assert p.properties("gpu.run", {"gpu": "l4"})["gpu"] == "l4"
    # a unique_count value is an identifier, never a quantity
    assert p.properties("app.login", {"user": "42"})["user"].startswith("erased:")


def test_pseudonyms_are_consistent_within_a_key_and_unlinkable_across_keys() -> None:
    a, b = pseudonyms(b"a" * 32), pseudonyms(b"b" * 32)
    assert a.canonical("s:alice") == a.canonical("s:alice") != a.canonical("s:bob")
    assert a.canonical("s:alice") != b.canonical("s:alice")
    assert a.canonical("n:42") != a.canonical("s:42")  # type-tagged, like the rest of usage
    erased = a.canonical("s:alice")
    assert a.canonical(erased) == erased == b.canonical(erased)  # idempotent: a retry changes nothing
    assert a.canonical("z:") == "z:" and a.canonical("b:true") == "b:true"
    assert a.uniques({"s:alice", "s:bob", "s:alice"}) == {a.canonical("s:alice"), a.canonical("s:bob")}
    assert a.properties("gpu.run", {"user": "alice"})["user"] == erased[2:]  # raw events map like buckets


def test_group_keys_keep_matrix_values_per_dimension() -> None:
    p = pseudonyms()
    key = '["s:h100","s:alice"]'
    out = p.group(GPU, key)
    assert out.startswith('["s:h100","s:erased:') and p.group(GPU, out) == out
    assert p.group(GPU, '["s:t4","z:"]').endswith(',"z:"]') and "t4" not in p.group(GPU, '["s:t4","z:"]')
    assert p.group(USERS, "") == ""
