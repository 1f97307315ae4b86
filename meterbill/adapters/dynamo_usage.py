"""Billing table: 15-minute usage buckets (with their sealed pages of per-event and distinct
values), stream batches applied, and usage the aggregator kept aside (dead letters)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_table import DynamoTable
from meterbill.domain.meters import BucketState
from meterbill.ports import BucketKey, StoredBucket
from meterbill.services.errors import Conflict, UnstorableItem


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


def text_chunks(text: str, size: int) -> Iterable[str]:
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


def unique_chunks(values: Iterable[str], size: int) -> Iterable[list[str]]:
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


class UsageItems(DynamoTable):
    def first_usage_bucket(self, customer_id: str) -> int | None:
        resp = self._c.query(TableName=self._t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": f"U#{customer_id}"}},
                             Limit=1, ProjectionExpression="bs")
        items = resp.get("Items", [])
        return int(items[0]["bs"]["N"]) if items else None

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
            pages += [self._put_page(bucket.key, "v", chunk) for chunk in text_chunks(doc.pop("vs"), PAGE_MAX)]
        if "u" in doc and sum(len(v.encode()) for v in doc["u"]) > VALUES_INLINE:
            pages += [self._put_unique_page(bucket.key, chunk) for chunk in unique_chunks(doc.pop("u"), PAGE_MAX)]
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
