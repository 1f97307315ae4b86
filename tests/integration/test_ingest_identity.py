"""Identity of events end to end, on the in-process stack (moto, real services, real stream):
ids follow one rule everywhere, an event id is taken by its first payload in the raw store, the
aggregates and every response, content digests cannot be forged, pending customers are not
flagged from a stale cache, and only numbers DynamoDB can store (and sum) are accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterbill.domain.errors import InvalidField
from tests.conftest import ev, standard_catalog


def body(*events: dict[str, Any]) -> str:
    return json.dumps({"events": list(events)})


@pytest.fixture
def catalog(container: Any) -> Any:
    return standard_catalog(container)


def tokens_used(container: Any, customer: str = "acme") -> Any:
    buckets = container.billing_store.query_buckets(customer, 0, 2**40)
    return sum(b.state.sum for b in buckets if b.meter == "tokens")


# -- one id rule -------------------------------------------------------------------------------
@pytest.mark.parametrize("customer_id", ["acme ", " acme", "tab\there", "a#b", "€uro"])
def test_customer_ids_ingest_rejects_are_rejected_by_the_catalog(container: Any, catalog: Any,
                                                                 customer_id: str) -> None:
    res = container.ingest.ingest(body(ev("e1", customer=customer_id, tokens=1)), None)
    assert [(e.field, e.code) for e in res.errors] == [("customer", "invalid_characters")]
    with pytest.raises(InvalidField) as exc:
        container.catalog.put_customer(customer_id, {"name": "X", "plan": "pro"})
    assert (exc.value.field, exc.value.code) == ("id", "invalid_characters")


def test_a_customer_id_ingest_accepts_can_be_created_and_billed(container: Any, catalog: Any) -> None:
    res = container.ingest.ingest(body(ev("e1", customer="Ünï corp:eu", tokens=3)), None)
    assert res.pending == ["e1"]
    container.catalog.put_customer("Ünï corp:eu", {"name": "X", "plan": "pro"})
    assert container.billing_store.list_pending(10, None)[0] == []


def test_meter_event_type_follows_the_event_type_rule(container: Any) -> None:
    with pytest.raises(InvalidField) as exc:
        container.catalog.put_meter("m", {"event_type": "api.call ", "aggregation": "count"})
    assert exc.value.field == "event_type"
    container.catalog.put_meter("m", {"event_type": "com.example/api call", "aggregation": "count"})
