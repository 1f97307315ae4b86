"""Billing table: usage items (customer × meter × group × hour, holding four 15-minute cells,
with their sealed pages of per-event and distinct values) and usage the aggregator kept aside
(dead letters). Quarter-hour items written before hour items are still read, as one-cell items."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_table import DynamoTable
from meterbill.domain.meters import BUCKET_SECONDS, BucketState
from meterbill.ports import ITEM_SECONDS, BucketKey, StoredBucket, UsageItem, item_start
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


def item_pk_sk(key: BucketKey, legacy: bool = False) -> tuple[str, str]:
    """Hour item: ``<hour:012d>|<meter>#<group>``; legacy quarter-hour item:
    ``<start:012d>#<meter>#<group>``. Both sort by start, so one range query reads both."""
    customer, start_s, meter, group = key
    return f"U#{customer}", f"{start_s:012d}{'#' if legacy else '|'}{meter}#{group}"


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


def state_from_doc(doc: Mapping[str, Any]) -> BucketState:
    latest = (int(doc["lt"]), str(doc["li"]), Decimal(doc["lv"])) if "lt" in doc else None
    state = BucketState(count=int(doc.get("n", 0)), sum=Decimal(doc.get("s", 0)), max=doc.get("mx"),
                        min=doc.get("mn"), latest=latest, uniques=set(doc.get("u", ())))
    if "vs" in doc:
        decode_values(doc["vs"], state.values)
    return state


def state_to_doc(st: BucketState, pages: Sequence[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"n": st.count, "s": st.sum}
    if st.max is not None:
        doc["mx"] = st.max
    if st.min is not None:
        doc["mn"] = st.min
    if st.latest is not None:
        doc.update(lt=st.latest[0], li=st.latest[1], lv=st.latest[2])
    if st.uniques:
        doc["u"] = set(st.uniques)
    if st.values:
        doc["vs"] = encode_values(st.values)
    if pages:
        doc["vp"] = list(pages)
    return doc


def item_from_doc(doc: Mapping[str, Any]) -> UsageItem:
    start = int(doc["bs"])
    key = (doc["pk"][2:], start, doc["m"], doc.get("g", ""))
    markers, version = dict(doc.get("ap", {})), int(doc["v"])
    if "c" not in doc:  # a quarter-hour item written before hour items: one cell
        return UsageItem(key, {start: state_from_doc(doc)}, markers, version,
                         {start: tuple(doc["vp"])} if doc.get("vp") else {}, legacy=True)
    cells, pages = {}, {}
    for index, cell in doc["c"].items():
        at = start + int(index) * BUCKET_SECONDS
        cells[at] = state_from_doc(cell)
        if cell.get("vp"):
            pages[at] = tuple(cell["vp"])
    pending = {start + int(index) * BUCKET_SECONDS: state_from_doc(cell) for index, cell in doc.get("pc", {}).items()}
    return UsageItem(key, cells, markers, version, pages, pending=pending, rebuilt=doc.get("rb"))


def item_to_doc(item: UsageItem) -> dict[str, Any]:
    pk, sk = item_pk_sk(item.key, item.legacy)
    start = item.key[1]
    doc: dict[str, Any] = {"pk": pk, "sk": sk, "bs": start, "m": item.meter, "g": item.group,
                           "ap": item.markers, "v": item.version}
    if item.legacy:
        ((at, state),) = item.cells.items()
        return {**doc, **state_to_doc(state, item.pages.get(at, ()))}
    doc["c"] = {str((at - start) // BUCKET_SECONDS): state_to_doc(state, item.pages.get(at, ()))
                for at, state in sorted(item.cells.items())}
    if item.pending:  # usage held while a rebuild runs: inline (a rebuild is short), never paged
        doc["pc"] = {str((at - start) // BUCKET_SECONDS): state_to_doc(state, ())
                     for at, state in sorted(item.pending.items())}
    if item.rebuilt:
        doc["rb"] = item.rebuilt
    return doc


def cell_docs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The cell documents of an item document (a legacy item is its own one cell)."""
    return list(doc["c"].values()) if "c" in doc else [doc]


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
        """Start (epoch s) of the customer's first quarter-hour with usage."""
        resp = self._c.query(TableName=self._t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": f"U#{customer_id}"}},
                             Limit=1, ProjectionExpression="bs")
        items = resp.get("Items", [])
        if not items:
            return None
        first = int(items[0]["bs"]["N"])  # an hour item's first cell may lie after a later-keyed legacy one
        return min((at for i in self.usage_items_between(customer_id, first, first + ITEM_SECONDS) for at in i.cells
                    if first <= at < first + ITEM_SECONDS), default=first)

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

    def rebuilds(self) -> list[dict[str, Any]]:
        """Every usage rebuild record (running, or finished and still owning events), strongly
        consistent: the aggregator reads them once per stream batch."""
        return list(self._query_all({"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                     "ExpressionAttributeValues": {":p": {"S": "REBUILD"}},
                                     "ConsistentRead": True}))

    def put_rebuild(self, doc: Mapping[str, Any], create: bool) -> None:
        """Create a rebuild record (only if its id is new), or update it (only if it exists)."""
        self._put({**doc, "pk": "REBUILD", "sk": doc["id"]},
                  "attribute_not_exists(pk)" if create else "attribute_exists(pk)")

    def get_usage_items(self, keys: Sequence[BucketKey], legacy: bool = False) -> dict[BucketKey, UsageItem]:
        """The stored items with these keys (hour items; ``legacy``: quarter-hour items), pages unread."""
        found = (item_from_doc(d) for d in self._batch_get([item_pk_sk(k, legacy) for k in keys]))
        return {i.key: i for i in found}

    def put_usage_item(self, item: UsageItem, expected_version: int | None) -> bool:
        """False when another writer got there first (re-read and re-apply). Per-event and distinct
        values beyond VALUES_INLINE are first sealed into pages; the conditional put that references
        them is what counts them, so pages of a losing writer are never read."""
        doc = self._sealed(item)
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

    def replace_usage_items(self, new: UsageItem, expected_version: int | None, remove: Sequence[UsageItem]) -> bool:
        """In one transaction: put ``new`` (absent, or at ``expected_version``) and delete each of
        ``remove`` at its version (items ``new`` takes the place of). False if any changed meanwhile."""
        put: dict[str, Any] = {"TableName": self._t, "Item": to_item(self._sealed(new))}
        if expected_version is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put.update(ConditionExpression="v = :t", ExpressionAttributeValues={":t": {"N": str(expected_version)}})
        ops: list[dict[str, Any]] = [{"Put": put}]
        for old in remove:
            pk, sk = item_pk_sk(old.key, old.legacy)
            ops.append({"Delete": {"TableName": self._t, "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                                   "ConditionExpression": "v = :v",
                                   "ExpressionAttributeValues": {":v": {"N": str(old.version)}}}})
        try:
            self._transact(ops)
        except Conflict:
            return False
        return True

    def _sealed(self, item: UsageItem) -> dict[str, Any]:
        """The item's document with inline values kept to VALUES_INLINE bytes (of value multisets,
        and of distinct values) over all its cells: the largest cells' values are sealed into pages."""
        doc = item_to_doc(item)
        at = (doc["pk"], doc["sk"])
        cells = cell_docs(doc)
        for field, size, seal in (
                ("vs", lambda c: len(c["vs"]),
                 lambda c: [self._put_page(at, "v", chunk) for chunk in text_chunks(c.pop("vs"), PAGE_MAX)]),
                ("u", lambda c: sum(len(v.encode()) for v in c["u"]),
                 lambda c: [self._put_unique_page(at, chunk) for chunk in unique_chunks(c.pop("u"), PAGE_MAX)])):
            holding = sorted((c for c in cells if field in c), key=size, reverse=True)
            total = sum(size(c) for c in holding)
            for cell in holding:
                if total <= VALUES_INLINE:
                    break
                total -= size(cell)
                cell["vp"] = self._roll_up(at, [*cell.get("vp", ()), *seal(cell)])
        return doc

    @staticmethod
    def _page_key(item: tuple[str, str], page: str) -> tuple[str, str]:
        """A sealed page of the item with key ``item`` (pk, sk): ``UV#<customer>`` / ``<item sk>#<page id>``."""
        return f"UV#{item[0][2:]}", f"{item[1]}#{page}"

    def _put_page(self, item: tuple[str, str], kind: str, text: str) -> str:
        """Store an immutable page; its id is its kind and content hash, so a rewrite is a no-op."""
        page = kind + hashlib.sha256(text.encode()).hexdigest()[:32]
        pk, sk = self._page_key(item, page)
        self._c.put_item(TableName=self._t, Item={"pk": {"S": pk}, "sk": {"S": sk}, "vs": {"S": text}})
        return page

    def _put_unique_page(self, item: tuple[str, str], values: list[str]) -> str:
        """An immutable page of distinct values (a string set; values may hold any character)."""
        page = "u" + hashlib.sha256(json.dumps(values).encode()).hexdigest()[:32]
        pk, sk = self._page_key(item, page)
        self._c.put_item(TableName=self._t, Item={"pk": {"S": pk}, "sk": {"S": sk}, "us": {"SS": values}})
        return page

    def _roll_up(self, item: tuple[str, str], pages: list[str]) -> list[str]:
        """Over REFS_MAX value pages ("v…", "u…"), seal their ids into one page of ids ("r…").
        A value page id may repeat: each reference counts (a distinct value counts once anyway)."""
        value_pages = [p for p in pages if p[0] != "r"]
        if len(value_pages) > REFS_MAX:
            pages = [p for p in pages if p[0] == "r"] + [self._put_page(item, "r", " ".join(value_pages))]
        return pages

    def read_item_pages(self, items: Sequence[UsageItem], cells: set[tuple[BucketKey, int]] | None = None) -> None:
        """Merge every referenced page into its cell's ``values`` / ``uniques`` (those cells' pages
        become empty); ``cells`` (item key, cell start) limits which cells are read."""
        todo = [(item_pk_sk(i.key, i.legacy), i.cells[at], page) for i in items for at, pages in i.pages.items()
                if cells is None or (i.key, at) in cells for page in pages]
        while todo:
            found = {(d["pk"], d["sk"]): d
                     for d in self._batch_get(sorted({self._page_key(owner, p) for owner, _, p in todo}))}
            more = []
            for owner, state, page in todo:
                doc = found.get(self._page_key(owner, page))
                if doc is None:
                    raise RuntimeError(f"usage item {owner} references missing values page {page}")
                if page[0] == "r":
                    more.extend((owner, state, p) for p in doc["vs"].split())
                elif page[0] == "u":
                    state.uniques.update(doc["us"])
                else:
                    decode_values(doc["vs"], state.values)
            todo = more
        for i in items:
            i.pages = {at: p for at, p in i.pages.items() if cells is not None and (i.key, at) not in cells}

    def usage_items_between(self, customer_id: str, start_s: int, end_s: int) -> list[UsageItem]:
        """The items holding quarter-hours that start in [start_s, end_s), pages unread: one range
        query over hour items and legacy quarter-hour items (the caller keeps the cells in range)."""
        return [item_from_doc(d) for d in self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": {"S": f"U#{customer_id}"}, ":a": {"S": f"{item_start(start_s):012d}"},
                                          ":b": {"S": f"{end_s - 1:012d}~"}},
            "ConsistentRead": True})]

    def query_buckets(self, customer_id: str, start_s: int, end_s: int) -> list[StoredBucket]:
        """Buckets whose start lies in [start_s, end_s), with all their per-event values."""
        items = self.usage_items_between(customer_id, start_s, end_s)
        inside = {(i.key, at) for i in items for at in i.cells if start_s <= at < end_s}
        self.read_item_pages([i for i in items if i.pages], inside)
        return sorted((b for i in items for b in i.buckets() if start_s <= b.start_s < end_s),
                      key=lambda b: (b.start_s, b.meter, b.group))   # time order, as quarter-hour items sorted
