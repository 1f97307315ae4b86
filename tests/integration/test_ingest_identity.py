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


# -- content digest ----------------------------------------------------------------------------
def legacy_digest(customer: str, type_: str, ts_ms: int, props: dict[str, Any]) -> str:
    """The version-1 digest, as events stored before 2026-12-01 carry it."""
    import hashlib

    from meterbill.domain.events import canonical_scalar

    parts = [customer, type_, str(ts_ms)]
    for key in sorted(props):
        parts += [key, canonical_scalar(props[key])]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def test_a_different_payload_is_not_a_duplicate_even_if_it_spells_the_old_separator(
        container: Any, catalog: Any) -> None:
    first = container.ingest.ingest(body(ev("x", tokens=5, note="a", p2="b")), None)
    assert first.accepted == 1
    forged = ev("x", tokens=5, note="a\x1fp2\x1fs:b")  # one property, same old-style encoding
    res = container.ingest.ingest(body(forged), None)
    assert (res.accepted, res.duplicates) == (0, 0)
    assert [(e.field, e.code) for e in res.errors] == [("id", "id_conflict")]


def test_an_event_stored_with_a_legacy_digest_is_still_its_own_duplicate(container: Any, catalog: Any) -> None:
    from meterbill.domain.events import Event

    props = {"tokens": 5, "model": "m1"}
    ts = 1_791_626_400_000  # 2026-10-10T10:00:00Z
    stored = Event("old", "acme", "api.call", ts, props, legacy_digest("acme", "api.call", ts, props))
    assert container.events_store.put([(stored, "")], ts).stored == {"old"}
    res = container.ingest.ingest(body(ev("old", tokens=5, model="m1")), None)
    assert (res.accepted, res.duplicates, res.errors) == (0, 1, [])
    res = container.ingest.ingest(body(ev("old", tokens=6, model="m1")), None)
    assert [(e.field, e.code) for e in res.errors] == [("id", "id_conflict")]


# -- numbers -----------------------------------------------------------------------------------
def raw_body(*events_json: str) -> str:
    return '{"events": [' + ", ".join(events_json) + "]}"


def event_json(event_id: str, props_json: str) -> str:
    return (f'{{"id": "{event_id}", "customer": "acme", "type": "api.call", "timestamp": "2026-10-10T10:00:00Z", '
            f'"properties": {props_json}}}')


@pytest.mark.parametrize("props", ['{"tokens": "1e200"}', '{"tokens": "1e-200"}', '{"tokens": 1e200}',
                                   '{"tokens": "1234567890123456789012345678901234567890"}',
                                   '{"tokens": 1, "other": 1e-200}', '{"tokens": 1, "other": 1e999}',
                                   '{"tokens": 1, "other": ' + "7" * 40 + "}"])
def test_numbers_dynamodb_cannot_store_or_sum_are_rejected_per_event(container: Any, catalog: Any, drain: Any,
                                                                     props: str) -> None:
    res = container.ingest.ingest(raw_body(event_json("bad", props), event_json("good", '{"tokens": 2}')), None)
    assert res.accepted == 1 and [e.id for e in res.errors] == ["bad"]
    error = res.errors[0]
    assert error.field in ("properties.tokens", "properties.other") and "10^16" in error.message
    drain()  # the good event is aggregated; nothing blocks the stream
    assert tokens_used(container) == 2


def test_an_unstorable_number_already_in_the_raw_store_does_not_block_aggregation(container: Any, catalog: Any,
                                                                                   drain: Any) -> None:
    """Accepted before the rule existed: the aggregator skips it (logged), never retries forever."""
    from meterbill.domain.events import Event, digest

    ts = 1_791_626_400_000
    stuck = Event("stuck", "acme", "api.call", ts, {"tokens": "1e200"}, digest("acme", "api.call", ts, {"tokens": "1e200"}))
    assert container.events_store.put([(stuck, "")], ts).stored == {"stuck"}
    container.ingest.ingest(body(ev("fine", tokens=3)), None)
    drain()
    assert tokens_used(container) == 3


def test_http_1e999_is_a_per_event_error_not_a_500(container: Any, catalog: Any) -> None:
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from meterbill.api.app import build_app
    from tests.integration.test_api import SECRETS, Api

    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: container), container)
    resp = api.request("POST", "/v1/events", key="ingest", headers={"Content-Type": "application/json"},
                       content=raw_body(event_json("big", '{"tokens": 1e999}'), event_json("nan", '{"tokens": NaN}'),
                                        event_json("ok", '{"tokens": 1}')))
    assert resp.status_code == 207, resp.text
    assert [(e["id"], e["field"], e["code"]) for e in resp.json()["errors"]] == [
        ("big", "properties.tokens", "number_out_of_range"), ("nan", "properties.tokens", "invalid_number")]


# -- pending customers -------------------------------------------------------------------------
def test_a_customer_created_elsewhere_is_not_pending_from_a_stale_cache(container: Any, catalog: Any,
                                                                        ddb: Any, clock: Any) -> None:
    """An ingest instance (10 s customer cache, like a warm Lambda) saw 'newco' missing; the API
    (another instance) then created it and cleared its pending entry."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    ingest_side = bootstrap(Settings(events_table="t-events", billing_table="t-billing"), client=ddb,
                            clock=clock, cache_ttl_s=10)
    first = ingest_side.ingest.ingest(body(ev("n1", customer="newco", tokens=1)), None)
    assert first.pending == ["n1"]
    container.catalog.put_customer("newco", {"name": "New Co", "plan": "pro"})
    assert container.billing_store.list_pending(10, None)[0] == []
    # after newco's start (now: it has no usage yet), or it would be flagged before_start
    second = ingest_side.ingest.ingest(body(ev("n2", customer="newco", ts="2026-11-05T12:00:00Z", tokens=1)), None)
    assert second.pending == [] and second.accepted == 1
    assert container.events_store.get("n2")["flag"] is None
    assert container.billing_store.list_pending(10, None)[0] == []


def test_a_customer_created_while_its_first_events_are_ingested_leaves_no_pending_entry(
        container: Any, catalog: Any) -> None:
    """The customer appears between ingest's check and its pending note: the note is withdrawn."""
    from meterbill.services.ingest import IngestService

    class CreatedMeanwhile:
        def __init__(self, store: Any) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

        def note_pending(self, customer_id: str, events: int, first_ms: int, at_iso: str) -> None:
            container.catalog.put_customer(customer_id, {"name": "Late Co", "plan": "pro"})  # clears pending
            self._store.note_pending(customer_id, events, first_ms, at_iso)

    ingest = IngestService(container.events_store, container.catalog, container.clock,
                           CreatedMeanwhile(container.billing_store))
    res = ingest.ingest(body(ev("l1", customer="lateco", tokens=1)), None)
    assert res.accepted == 1
    assert container.billing_store.list_pending(10, None)[0] == []


# -- the first payload of an id wins everywhere ------------------------------------------------
def interleaved_ingest(container: Any, ddb: Any, meanwhile: Any) -> Any:
    """An IngestService on the real event store that runs ``meanwhile`` (another request) after
    this request has validated and flagged its events (the old write path had also checked that
    their ids were free by then) and right before it writes them."""
    from meterbill.adapters.dynamo_events import DynamoEventStore
    from meterbill.services.ingest import IngestService

    class Interleaving(DynamoEventStore):
        def put(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal meanwhile
            if meanwhile is not None:
                run, meanwhile = meanwhile, None
                run()
            return super().put(*args, **kwargs)

    store = Interleaving(ddb, "t-events")
    return IngestService(store, container.catalog, container.clock, container.billing_store)


def test_two_payloads_racing_for_one_id_first_write_wins_everywhere(container: Any, catalog: Any,
                                                                    drain: Any, ddb: Any) -> None:
    other: list[Any] = []
    slow = interleaved_ingest(container, ddb, lambda: other.append(
        container.ingest.ingest(body(ev("x", tokens=7)), None)))
    mine = slow.ingest(body(ev("x", tokens=5), ev("y", tokens=1)), None)
    (first,) = other
    assert (first.accepted, first.errors) == (1, [])                       # stored first: accepted
    assert mine.accepted == 1                                               # "y" only
    assert [(e.id, e.field, e.code) for e in mine.errors] == [("x", "id", "id_conflict")]
    assert container.events_store.get("x")["properties"] == {"tokens": 7}  # raw store: the first
    drain()
    assert tokens_used(container) == 8                                      # aggregates: the first (+ y)


def test_two_identical_requests_racing_are_accepted_once(container: Any, catalog: Any, drain: Any,
                                                         ddb: Any) -> None:
    other: list[Any] = []
    slow = interleaved_ingest(container, ddb, lambda: other.append(
        container.ingest.ingest(body(ev("x", tokens=5)), None)))
    mine = slow.ingest(body(ev("x", tokens=5)), None)
    assert (other[0].accepted, mine.accepted, mine.duplicates, mine.errors) == (1, 0, 1, [])
    drain()
    assert tokens_used(container) == 5


def test_an_event_dynamodb_refuses_is_reported_per_event_and_can_be_retried(container: Any, catalog: Any,
                                                                            ddb: Any) -> None:
    from botocore.exceptions import ClientError

    def throttle_b(params: dict[str, Any], **_: Any) -> None:
        if json.loads(params["body"])["Item"]["id"]["S"] == "b":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutItem")

    ddb.meta.events.register("before-call.dynamodb.PutItem", throttle_b)
    try:
        res = container.ingest.ingest(body(ev("a", tokens=1), ev("b", customer="newco", tokens=2)), None)
    finally:
        ddb.meta.events.unregister("before-call.dynamodb.PutItem", throttle_b)
    assert res.accepted == 1 and res.pending == []
    assert [(e.id, e.code) for e in res.errors] == [("b", "storage_unavailable")]
    assert container.billing_store.list_pending(10, None)[0] == []  # nothing stored for newco
    retry = container.ingest.ingest(body(ev("a", tokens=1), ev("b", customer="newco", tokens=2)), None)
    assert (retry.accepted, retry.duplicates, retry.pending) == (1, 1, ["b"])


def test_a_write_the_sdk_retried_after_it_landed_counts_as_accepted(container: Any, catalog: Any,
                                                                    ddb: Any) -> None:
    """The first attempt stored the item but its response was lost; the retry finds the item."""
    def landed_already(params: dict[str, Any], **_: Any) -> None:
        ddb.meta.events.unregister("before-call.dynamodb.PutItem", landed_already)
        ddb.put_item(TableName="t-events", Item=json.loads(params["body"])["Item"])

    ddb.meta.events.register("before-call.dynamodb.PutItem", landed_already)
    res = container.ingest.ingest(body(ev("p", customer="newco", tokens=1)), None)
    assert (res.accepted, res.duplicates, res.pending, res.errors) == (1, 0, ["p"], [])
    assert [p["customer"] for p in container.billing_store.list_pending(10, None)[0]] == ["newco"]
