"""Billing table (single-table design): catalog, usage buckets, invoices, counters, keys.

Item layout (pk / sk):
  METER#<code> / METER        gsi1: METERS / <code>
  PLAN#<code>  / PLAN         gsi1: PLANS  / <code>
  PLAN#<code>  / V#<version>  every saved version, immutable (re-rating closed periods)
  CUS#<id>     / PROFILE      gsi1: CUSTOMERS / <id>     gsi2: DUE / <next period end>#<id>
  CUS#<id>     / LATE#<period start>      late usage marker (re-rating work list)
  CUS#<id>     / DISC#<discount id>       a discount and how often it has been applied
  CUS#<id>     / GRANT#<grant id>         prepaid credit: amount, remaining, expiry
  PROG#<customer> / PROG      gsi1: PROGRESSIVE / <customer>   billed by threshold (progressive billing)
  PENDING#<customer> / PENDING  gsi1: PENDING / <customer>   usage for a customer not created yet
  U#<customer> / <bucket start:012d>#<meter>#<group>   usage bucket (no GSI: 1 write)
  UV#<customer> / <bucket sk>#<page id>   sealed page of a bucket's per-event values or distinct
                                          values (unique_count), immutable
  INV#<id>     / INVOICE      gsi1: CUSINV#<customer> / <period start>   gsi2: INVOICES / <number>
  COUNTER#invoice / COUNTER   gapless invoice sequence (COUNTER#credit_note: credit notes)
  CN#<id>      / CREDITNOTE   gsi1: CN#<invoice id> / <number>   gsi2: CREDITNOTES / <number>
  KEY#<sha256> / KEY          API key (hash only)
  AGGDONE#<first seq> / DONE  a stream batch fully applied (TTL 2 days: streams keep 24 h)
  DEADLETTER / <batch>#<key>  usage the aggregator could not apply (undecodable, unstorable)
  STREAMPOS / <shard id>      the aggregator's checkpoint per stream shard (the usage watermark)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.domain.meters import BucketState
from meterbill.ports import BucketKey, ItemChange, StoredBucket
from meterbill.services.errors import Conflict, UnstorableItem

BATCH_GET = 100
MAX_ATTEMPTS = 8
# Per-event values of keep_values meters (docs/decisions.md, "Per-event values") and the distinct
# values of unique_count meters: a bucket item keeps at most VALUES_INLINE bytes of them; beyond
# that they are sealed into immutable pages of <= PAGE_MAX bytes ("v": a value multiset, "u": a
# set of distinct values), and more than REFS_MAX such pages are sealed into one page of ids ("r").
VALUES_INLINE = 16_384
PAGE_MAX = 200_000
REFS_MAX = 1_000


# DynamoDB's ValidationException messages for an item it can never store (retrying is useless)
UNSTORABLE_MESSAGES = ("Item size has exceeded", "Item size to update has exceeded", "Number overflow",
                       "Number underflow", "significant digits", "range keys has exceeded",
                       "hash keys has exceeded")


class ThrottledError(RuntimeError):
    """Storage is throttling; the caller's retry (Lambda, client) will try again."""


def bucket_pk_sk(key: BucketKey) -> tuple[str, str]:
    customer, start_s, meter, group = key
    return f"U#{customer}", f"{start_s:012d}#{meter}#{group}"


def encode_values(values: Mapping[Decimal, int]) -> str:
    """A value multiset as text: ``"12.5*3 7 0.99*2"`` (``*count`` only when more than one)."""
    return " ".join(str(v) if n == 1 else f"{v}*{n}" for v, n in values.items())


def decode_values(text: str, into: dict[Decimal, int]) -> None:
    """Add the multiset ``text`` (see encode_values) to ``into``."""
    get = into.get
    for entry in text.split():
        value, _, n = entry.partition("*")
        d = Decimal(value)
        into[d] = get(d, 0) + int(n or 1)


def bucket_from_doc(doc: Mapping[str, Any]) -> StoredBucket:
    latest = (int(doc["lt"]), str(doc["li"]), Decimal(doc["lv"])) if "lt" in doc else None
    state = BucketState(count=int(doc.get("n", 0)), sum=Decimal(doc.get("s", 0)), max=doc.get("mx"),
                        min=doc.get("mn"), latest=latest, uniques=set(doc.get("u", ())))
    if "vs" in doc:
        decode_values(doc["vs"], state.values)
    key = (doc["pk"][2:], int(doc["bs"]), doc["m"], doc.get("g", ""))
    return StoredBucket(key, state, dict(doc.get("ap", {})), int(doc["v"]), tuple(doc.get("vp", ())))


def bucket_to_doc(bucket: StoredBucket) -> dict[str, Any]:
    pk, sk = bucket_pk_sk(bucket.key)
    st = bucket.state
    doc: dict[str, Any] = {"pk": pk, "sk": sk, "bs": bucket.start_s, "m": bucket.meter, "g": bucket.group,
                           "n": st.count, "s": st.sum, "mx": st.max, "mn": st.min,
                           "ap": bucket.markers, "v": bucket.version}
    if st.latest is not None:
        doc.update(lt=st.latest[0], li=st.latest[1], lv=st.latest[2])
    if st.uniques:
        doc["u"] = set(st.uniques)
    if st.values:
        doc["vs"] = encode_values(st.values)
    if bucket.pages:
        doc["vp"] = list(bucket.pages)
    return doc


VERSIONED = frozenset({"PLAN"})
SUB_ITEMS = {"late": "LATE#", "discount": "DISC#", "grant": "GRANT#"}


def _change_key(ch: ItemChange) -> dict[str, Any]:
    if ch.kind == "invoice":
        return {"pk": {"S": f"INV#{ch.owner}"}, "sk": {"S": "INVOICE"}}
    return {"pk": {"S": f"CUS#{ch.owner}"}, "sk": {"S": SUB_ITEMS[ch.kind] + ch.key}}


def _change_op(table: str, ch: ItemChange) -> dict[str, Any]:
    """ItemChange -> one TransactWriteItems entry (conditional put, update or delete)."""
    key = _change_key(ch)
    if ch.create:
        return {"Put": {"TableName": table, "Item": {**to_item(ch.set or {}), **key},
                        "ConditionExpression": "attribute_not_exists(pk)"}}
    names = {f"#e{i}": k for i, k in enumerate(ch.expect)}
    values = {f":e{i}": v for i, v in enumerate(ch.expect.values())}
    cond = " AND ".join(["attribute_exists(pk)", *(
        f"attribute_not_exists(#e{i})" if v is None else f"#e{i} = :e{i}" for i, v in enumerate(ch.expect.values()))])
    values = {k: v for k, v in values.items() if v is not None}
    op: dict[str, Any] = {"TableName": table, "Key": key, "ConditionExpression": cond}
    if ch.set is None:
        kind = "Delete"
    else:
        kind = "Update"
        names.update({f"#s{i}": k for i, k in enumerate(ch.set)})
        values.update({f":s{i}": v for i, v in enumerate(ch.set.values()) if v is not None})
        sets = [f"#s{i} = :s{i}" for i, v in enumerate(ch.set.values()) if v is not None]
        removes = [f"#s{i}" for i, v in enumerate(ch.set.values()) if v is None]
        op["UpdateExpression"] = " ".join(filter(None, [sets and "SET " + ", ".join(sets),
                                                        removes and "REMOVE " + ", ".join(removes)]))
    if names:
        op["ExpressionAttributeNames"] = names
    if values:
        op["ExpressionAttributeValues"] = to_item(values)
    return {kind: op}


def _chunks(text: str, size: int) -> Iterable[str]:
    """``text`` cut at spaces into pieces of at most ``size`` characters (an entry is never cut)."""
    while len(text) > size:
        cut = text.rfind(" ", 0, size + 1)
        if cut <= 0:
            cut = text.find(" ", 1)
            if cut < 0:
                break
        yield text[:cut]
        text = text[cut + 1:]
    yield text


def _unique_chunks(values: Iterable[str], size: int) -> Iterable[list[str]]:
    """Distinct values, sorted, in lists of at most ``size`` bytes (UTF-8) each."""
    chunk: list[str] = []
    used = 0
    for value in sorted(values):
        n = len(value.encode())
        if chunk and used + n > size:
            yield chunk
            chunk, used = [], 0
        chunk.append(value)
        used += n
    if chunk:
        yield chunk


def _conditional_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class DynamoBillingStore:
    def __init__(self, client: Any, table: str) -> None:
        self._c = client
        self._t = table

    # -- generic helpers -------------------------------------------------------------
    def _get(self, pk: str, sk: str, consistent: bool = True) -> dict[str, Any] | None:
        resp = self._c.get_item(TableName=self._t, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                ConsistentRead=consistent)
        return from_item(resp["Item"]) if "Item" in resp else None

    def _put(self, doc: Mapping[str, Any], condition: str | None = None,
             values: Mapping[str, Any] | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self._t, "Item": to_item(doc)}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = to_item(values)
        try:
            self._c.put_item(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                raise Conflict("the item changed concurrently; retry") from exc
            raise

    def _query_index(self, index: str, pk: str, limit: int, cursor: str | None,
                     sk_max: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        cond = f"{index}pk = :p"
        values: dict[str, Any] = {":p": {"S": pk}}
        if sk_max is not None:
            cond += f" AND {index}sk <= :m"
            values[":m"] = {"S": sk_max}
        kwargs: dict[str, Any] = {"TableName": self._t, "IndexName": index,
                                  "KeyConditionExpression": cond,
                                  "ExpressionAttributeValues": values, "Limit": limit}
        start = decode_cursor(cursor, {"pk": None, "sk": None, f"{index}pk": pk, f"{index}sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [from_item(i) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def _batch_get(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), BATCH_GET):
            request = {self._t: {"Keys": [{"pk": {"S": p}, "sk": {"S": s}} for p, s in keys[i:i + BATCH_GET]],
                                 "ConsistentRead": True}}
            for attempt in range(MAX_ATTEMPTS):
                resp = self._c.batch_get_item(RequestItems=request)
                out.extend(from_item(it) for it in resp["Responses"].get(self._t, []))
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise ThrottledError("DynamoDB kept returning unprocessed keys; retry later")
        return out

    # -- catalog ---------------------------------------------------------------------
    def put_catalog(self, kind: str, code: str, doc: Mapping[str, Any],
                    expected_version: int | None) -> None:
        """kind: METER | PLAN. Optimistic concurrency on ``version``."""
        item = {**doc, "pk": f"{kind}#{code}", "sk": kind, "gsi1pk": f"{kind}S", "gsi1sk": code}
        if kind not in VERSIONED:
            if expected_version is None:
                self._put(item, "attribute_not_exists(pk)")
            else:
                self._put(item, "version = :v", {":v": expected_version})
            return
        # plans: the current item and an immutable copy of this version, so a closed period can
        # be re-rated with exactly the terms it was invoiced under
        current: dict[str, Any] = {"TableName": self._t, "Item": to_item(item)}
        if expected_version is None:
            current["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            current.update(ConditionExpression="version = :v",
                           ExpressionAttributeValues={":v": {"N": str(expected_version)}})
        archived = {**doc, "pk": f"{kind}#{code}", "sk": f"V#{int(doc['version']):08d}"}
        self._transact([{"Put": current}, {"Put": {"TableName": self._t, "Item": to_item(archived),
                                                   "ConditionExpression": "attribute_not_exists(pk)"}}])

    def get_catalog(self, kind: str, code: str, version: int | None = None) -> dict[str, Any] | None:
        if version is None:
            return self._get(f"{kind}#{code}", kind)
        return self._get(f"{kind}#{code}", f"V#{version:08d}")

    def list_catalog(self, kind: str, limit: int = 100, cursor: str | None = None
                     ) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", f"{kind}S", limit, cursor)

    def all_catalog(self, kind: str) -> list[dict[str, Any]]:
        items, cursor = self.list_catalog(kind, 1000)
        while cursor:
            more, cursor = self.list_catalog(kind, 1000, cursor)
            items.extend(more)
        return items

    # -- customers -------------------------------------------------------------------
    def put_customer(self, doc: Mapping[str, Any], expected_version: int | None) -> None:
        item = {**doc, "pk": f"CUS#{doc['id']}", "sk": "PROFILE", "gsi1pk": "CUSTOMERS",
                "gsi1sk": doc["id"], "gsi2pk": "DUE", "gsi2sk": f"{doc['next_close']}#{doc['id']}"}
        if expected_version is None:
            self._put(item, "attribute_not_exists(pk)")
        else:
            self._put(item, "version = :v", {":v": expected_version})

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self._get(f"CUS#{customer_id}", "PROFILE")

    def get_customers(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found = self._batch_get([(f"CUS#{i}", "PROFILE") for i in ids])
        return {d["id"]: d for d in found}

    def list_customers(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", "CUSTOMERS", limit, cursor)

    def due_customers(self, as_of_iso: str, limit: int = 100, cursor: str | None = None
                      ) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi2", "DUE", limit, cursor, sk_max=as_of_iso + "~")

    def fence_close(self, customer_id: str, through_iso: str) -> None:
        """A billing run is about to read the customer's usage up to ``through_iso`` to finalize
        it. Does not change the profile's version (the invoice commit's condition)."""
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": "PROFILE"}},
                UpdateExpression="SET closing_through = :t",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(closing_through) "
                                    "OR closing_through < :t)",
                ExpressionAttributeValues={":t": {"S": through_iso}})
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def note_pending(self, customer_id: str, events: int, first_ms: int, at_iso: str) -> None:
        """Usage arrived for a customer that does not exist yet (one write per customer per batch)."""
        self._c.update_item(
            TableName=self._t, Key={"pk": {"S": f"PENDING#{customer_id}"}, "sk": {"S": "PENDING"}},
            UpdateExpression="SET customer = :c, gsi1pk = :g, gsi1sk = :c, last_seen = :a, "
                             "first_event_ms = if_not_exists(first_event_ms, :f) ADD events :n",
            ExpressionAttributeValues={":c": {"S": customer_id}, ":g": {"S": "PENDING"}, ":a": {"S": at_iso},
                                       ":f": {"N": str(first_ms)}, ":n": {"N": str(events)}})

    def clear_pending(self, customer_id: str) -> None:
        self._c.delete_item(TableName=self._t, Key={"pk": {"S": f"PENDING#{customer_id}"}, "sk": {"S": "PENDING"}})

    def set_progressive(self, customer_id: str, enabled: bool) -> None:
        """Keep the work list of customers billed by threshold (read by every billing run)."""
        key = {"pk": {"S": f"PROG#{customer_id}"}, "sk": {"S": "PROG"}}
        if enabled:
            self._c.put_item(TableName=self._t, Item={**key, "customer": {"S": customer_id},
                                                      "gsi1pk": {"S": "PROGRESSIVE"}, "gsi1sk": {"S": customer_id}})
        else:
            self._c.delete_item(TableName=self._t, Key=key)

    def progressive_customers(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        items, nxt = self._query_index("gsi1", "PROGRESSIVE", limit, cursor)
        return [i["customer"] for i in items], nxt

    def list_pending(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", "PENDING", limit, cursor)

    def mark_late(self, customer_id: str, period_start_iso: str, at_iso: str) -> None:
        self._c.update_item(TableName=self._t,
                            Key={"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": f"LATE#{period_start_iso}"}},
                            UpdateExpression="SET updated_at = :a ADD late_batches :one",
                            ExpressionAttributeValues={":a": {"S": at_iso}, ":one": {"N": "1"}})

    # -- customer sub-items: late markers, discounts, credit grants ----------------------
    def customer_items(self, kind: str, customer_id: str) -> list[dict[str, Any]]:
        return list(self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": {"S": f"CUS#{customer_id}"}, ":s": {"S": SUB_ITEMS[kind]}},
            "ConsistentRead": True}))

    def _query_all(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item a query matches, page after page."""
        while True:
            resp = self._c.query(**kwargs)
            yield from (from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": resp["LastEvaluatedKey"]}

    def put_customer_item(self, kind: str, customer_id: str, key: str, doc: Mapping[str, Any]) -> None:
        """Create once; Conflict if an item with that key exists."""
        self._put({**doc, "pk": f"CUS#{customer_id}", "sk": SUB_ITEMS[kind] + key}, "attribute_not_exists(pk)")

    def apply_changes(self, changes: Sequence[ItemChange]) -> None:
        self._transact([_change_op(self._t, ch) for ch in changes])

    def _transact(self, ops: list[dict[str, Any]]) -> None:
        try:
            self._c.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _conditional_failed(exc):
                raise Conflict("a stored item changed concurrently; retry") from exc
            raise

    def first_usage_bucket(self, customer_id: str) -> int | None:
        resp = self._c.query(TableName=self._t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": f"U#{customer_id}"}},
                             Limit=1, ProjectionExpression="bs")
        items = resp.get("Items", [])
        return int(items[0]["bs"]["N"]) if items else None

    # -- stream batches applied -------------------------------------------------------
    def batches_done(self, batch_ids: Iterable[str]) -> dict[str, str]:
        """batch id (first sequence number) -> last sequence number applied, for completed batches."""
        found = self._batch_get([(f"AGGDONE#{b}", "DONE") for b in batch_ids])
        return {d["pk"][8:]: d["last"] for d in found}

    def dead_letter(self, batch_id: str, key: str, doc: Mapping[str, Any]) -> None:
        """Usage the aggregator could not apply (kept for audit and replay; idempotent by key)."""
        self._c.put_item(TableName=self._t, Item=to_item({**doc, "pk": "DEADLETTER", "sk": f"{batch_id}#{key}",
                                                          "batch": batch_id}))

    def list_dead_letters(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": "DEADLETTER"}}, "Limit": limit}
        start = decode_cursor(cursor, {"pk": "DEADLETTER", "sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [from_item(i) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def mark_batch_done(self, batch_id: str, last_seq: str, expires_at_s: int) -> None:
        self._c.put_item(TableName=self._t, Item={
            "pk": {"S": f"AGGDONE#{batch_id}"}, "sk": {"S": "DONE"}, "last": {"S": last_seq},
            "expires_at": {"N": str(expires_at_s)}})

    # -- usage buckets ---------------------------------------------------------------
    def get_buckets(self, keys: Sequence[BucketKey]) -> dict[BucketKey, StoredBucket]:
        found = (bucket_from_doc(d) for d in self._batch_get([bucket_pk_sk(k) for k in keys]))
        return {b.key: b for b in found}

    def put_bucket(self, bucket: StoredBucket, expected_version: int | None) -> bool:
        """False when another writer got there first (re-read and re-apply). Per-event values
        beyond VALUES_INLINE are first sealed into pages; the conditional put that references
        them is what counts them, so pages of a losing writer are never read."""
        doc = bucket_to_doc(bucket)
        pages = list(bucket.pages)
        if len(doc.get("vs", "")) > VALUES_INLINE:
            pages += [self._put_page(bucket.key, "v", chunk) for chunk in _chunks(doc.pop("vs"), PAGE_MAX)]
        if "u" in doc and sum(len(v.encode()) for v in doc["u"]) > VALUES_INLINE:
            pages += [self._put_unique_page(bucket.key, chunk) for chunk in _unique_chunks(doc.pop("u"), PAGE_MAX)]
        if len(pages) > len(bucket.pages):
            doc["vp"] = self._roll_up(bucket.key, pages)
        try:
            if expected_version is None:
                self._put(doc, "attribute_not_exists(pk)")
            else:
                self._put(doc, "v = :v", {":v": expected_version})
        except Conflict:
            return False
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if exc.response.get("Error", {}).get("Code") == "ValidationException" and any(
                    m in message for m in UNSTORABLE_MESSAGES):
                raise UnstorableItem(message[:300]) from exc
            raise
        return True

    @staticmethod
    def _page_key(key: BucketKey, page: str) -> tuple[str, str]:
        return f"UV#{key[0]}", f"{bucket_pk_sk(key)[1]}#{page}"

    def _put_page(self, key: BucketKey, kind: str, text: str) -> str:
        """Store an immutable page; its id is its kind and content hash, so a rewrite is a no-op."""
        page = kind + hashlib.sha256(text.encode()).hexdigest()[:32]
        pk, sk = self._page_key(key, page)
        self._c.put_item(TableName=self._t, Item={"pk": {"S": pk}, "sk": {"S": sk}, "vs": {"S": text}})
        return page

    def _put_unique_page(self, key: BucketKey, values: list[str]) -> str:
        """An immutable page of distinct values (a string set; values may hold any character)."""
        page = "u" + hashlib.sha256(json.dumps(values).encode()).hexdigest()[:32]
        pk, sk = self._page_key(key, page)
        self._c.put_item(TableName=self._t, Item={"pk": {"S": pk}, "sk": {"S": sk}, "us": {"SS": values}})
        return page

    def _roll_up(self, key: BucketKey, pages: list[str]) -> list[str]:
        """Over REFS_MAX value pages ("v…", "u…"), seal their ids into one page of ids ("r…").
        A value page id may repeat: each reference counts (a distinct value counts once anyway)."""
        value_pages = [p for p in pages if p[0] != "r"]
        if len(value_pages) > REFS_MAX:
            pages = [p for p in pages if p[0] == "r"] + [self._put_page(key, "r", " ".join(value_pages))]
        return pages

    def _read_pages(self, buckets: list[StoredBucket]) -> None:
        """Merge every referenced page into its bucket's ``state.values`` / ``state.uniques``
        (pages become ``()``)."""
        todo = [(b, page) for b in buckets for page in b.pages]
        while todo:
            found = {(d["pk"], d["sk"]): d
                     for d in self._batch_get(sorted({self._page_key(b.key, p) for b, p in todo}))}
            more = []
            for b, page in todo:
                doc = found.get(self._page_key(b.key, page))
                if doc is None:
                    raise RuntimeError(f"usage bucket {b.key} references missing values page {page}")
                if page[0] == "r":
                    more.extend((b, p) for p in doc["vs"].split())
                elif page[0] == "u":
                    b.state.uniques.update(doc["us"])
                else:
                    decode_values(doc["vs"], b.state.values)
            todo = more
        for b in buckets:
            b.pages = ()

    def query_buckets(self, customer_id: str, start_s: int, end_s: int) -> list[StoredBucket]:
        """Buckets whose start lies in [start_s, end_s), with all their per-event values."""
        items = [bucket_from_doc(d) for d in self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": {"S": f"U#{customer_id}"}, ":a": {"S": f"{start_s:012d}"},
                                          ":b": {"S": f"{end_s - 1:012d}~"}},
            "ConsistentRead": True})]
        self._read_pages([b for b in items if b.pages])
        return items

    # -- invoices --------------------------------------------------------------------
    def invoice_counter(self) -> int:
        doc = self._get("COUNTER#invoice", "COUNTER")
        return int(doc["n"]) if doc else 0

    def commit_invoice(self, invoice: Mapping[str, Any], number_seq: int,
                       customer_id: str, customer_version: int, customer_changes: Mapping[str, Any],
                       changes: Sequence[ItemChange] = ()) -> None:
        """Atomically: store the invoice (once), take sequence number ``number_seq`` (gapless),
        advance the customer's closed-through mark, and apply ``changes`` (discounts used,
        credits drawn, late usage settled). All or nothing."""
        counter_update = self._counter_update("invoice", number_seq)
        names = {f"#k{i}": k for i, k in enumerate(customer_changes)}
        values = {f":v{i}": v for i, v in enumerate(customer_changes.values())}
        sets = ", ".join(f"#k{i} = :v{i}" for i in range(len(customer_changes)))
        customer_update = {
            "TableName": self._t, "Key": {"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": "PROFILE"}},
            "UpdateExpression": f"SET {sets}, version = :nv",
            "ConditionExpression": "version = :cv",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**to_item(values), ":nv": {"N": str(customer_version + 1)},
                                          ":cv": {"N": str(customer_version)}},
        }
        item = self._invoice_item(invoice, customer_id, f"{number_seq:012d}")
        try:
            self._c.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._t, "Item": to_item(item), **self._unless_final}},
                {"Update": counter_update},
                {"Update": customer_update},
                *(_change_op(self._t, ch) for ch in changes),
            ])
        except ClientError as exc:
            if _conditional_failed(exc):
                raise Conflict("invoice, sequence or customer changed concurrently") from exc
            raise

    def _counter_update(self, name: str, seq: int) -> dict[str, Any]:
        """Take number ``seq`` of a gapless sequence: only if ``seq - 1`` is the last one taken."""
        update: dict[str, Any] = {
            "TableName": self._t, "Key": {"pk": {"S": f"COUNTER#{name}"}, "sk": {"S": "COUNTER"}},
            "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": str(seq)}}}
        if seq == 1:
            update["ConditionExpression"] = "attribute_not_exists(n) OR n = :z"
            update["ExpressionAttributeValues"][":z"] = {"N": "0"}
        else:
            update["ConditionExpression"] = "n = :prev"
            update["ExpressionAttributeValues"][":prev"] = {"N": str(seq - 1)}
        return update

    # -- credit notes ----------------------------------------------------------------
    def credit_note_counter(self) -> int:
        doc = self._get("COUNTER#credit_note", "COUNTER")
        return int(doc["n"]) if doc else 0

    def commit_credit_note(self, note: Mapping[str, Any], number_seq: int, changes: Sequence[ItemChange]) -> None:
        """Store the credit note once with its gapless number, and apply ``changes`` (the invoice
        credited, a credit balance granted). All or nothing."""
        item = {**note, "pk": f"CN#{note['id']}", "sk": "CREDITNOTE", "gsi1pk": f"CN#{note['invoice_id']}",
                "gsi1sk": f"{number_seq:012d}", "gsi2pk": "CREDITNOTES", "gsi2sk": f"{number_seq:012d}"}
        self._transact([
            {"Put": {"TableName": self._t, "Item": to_item(item), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": self._counter_update("credit_note", number_seq)},
            *(_change_op(self._t, ch) for ch in changes)])

    def get_credit_note(self, note_id: str) -> dict[str, Any] | None:
        return self._get(f"CN#{note_id}", "CREDITNOTE")

    def list_credit_notes(self, invoice_id: str | None, limit: int, cursor: str | None
                          ) -> tuple[list[dict[str, Any]], str | None]:
        if invoice_id:
            return self._query_index("gsi1", f"CN#{invoice_id}", limit, cursor)
        return self._query_index("gsi2", "CREDITNOTES", limit, cursor)

    # a draft may be replaced (re-rated, or finalized); a final invoice never
    _unless_final: Mapping[str, Any] = {
        "ConditionExpression": "attribute_not_exists(pk) OR #st = :draft",
        "ExpressionAttributeNames": {"#st": "status"},
        "ExpressionAttributeValues": {":draft": {"S": "draft"}}}

    @staticmethod
    def _invoice_item(invoice: Mapping[str, Any], customer_id: str, order_key: str) -> dict[str, Any]:
        return {**invoice, "pk": f"INV#{invoice['id']}", "sk": "INVOICE",
                "gsi1pk": f"CUSINV#{customer_id}", "gsi1sk": invoice["period"]["start"],
                "gsi2pk": "INVOICES", "gsi2sk": order_key}

    def save_draft(self, invoice: Mapping[str, Any], customer_id: str) -> None:
        """Create or refresh a draft; never touches a finalized invoice. Drafts list after
        numbered invoices (gsi2 order key '~draft#…')."""
        item = self._invoice_item(invoice, customer_id, f"~draft#{invoice['period']['start']}#{customer_id}")
        try:
            self._c.put_item(TableName=self._t, Item=to_item(item), **self._unless_final)
        except ClientError as exc:
            if _conditional_failed(exc):
                raise Conflict(f"invoice {invoice['id']} is already final") from exc
            raise

    def set_invoice_status(self, invoice_id: str, allowed_from: Iterable[str], status: str,
                           changes: Mapping[str, Any]) -> dict[str, Any]:
        """Move an invoice to ``status`` only if it is in one of ``allowed_from`` (atomic)."""
        allowed = sorted(allowed_from)
        values = {f":f{i}": v for i, v in enumerate(allowed)}
        names = {"#st": "status", **{f"#c{i}": k for i, k in enumerate(changes)}}
        sets = ", ".join(["#st = :to", *(f"#c{i} = :c{i}" for i in range(len(changes)))])
        try:
            resp = self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
                UpdateExpression=f"SET {sets}",
                ConditionExpression=f"attribute_exists(pk) AND #st IN ({', '.join(values)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({**values, ":to": status,
                                                   **{f":c{i}": v for i, v in enumerate(changes.values())}}),
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _conditional_failed(exc):
                raise Conflict(f"invoice {invoice_id} is not in a state that allows this "
                               f"(allowed from: {', '.join(allowed)})", field="status") from exc
            raise
        return from_item(resp["Attributes"])

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        return self._get(f"INV#{invoice_id}", "INVOICE")

    def list_invoices(self, customer_id: str | None, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]:
        if customer_id:
            return self._query_index("gsi1", f"CUSINV#{customer_id}", limit, cursor)
        return self._query_index("gsi2", "INVOICES", limit, cursor)

    # -- api keys --------------------------------------------------------------------
    def put_key(self, digest: str, doc: Mapping[str, Any]) -> None:
        self._put({**doc, "pk": f"KEY#{digest}", "sk": "KEY"}, "attribute_not_exists(pk)")

    def get_key(self, digest: str) -> dict[str, Any] | None:
        return self._get(f"KEY#{digest}", "KEY", consistent=False)
