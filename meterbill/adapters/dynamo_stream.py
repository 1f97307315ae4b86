"""The usage watermark: how far aggregation has come through the events table's stream.

A billing run must not finalize a period while events accepted before the run started are still
waiting in the stream (docs/decisions.md, "The usage watermark"). The aggregator records, per
stream shard, the last record of every batch it has applied in full (a checkpoint: sequence
number and ``ApproximateCreationDateTime``). A run asks the stream itself, shard by shard, for
the first record after that checkpoint (``GetShardIterator`` AFTER_SEQUENCE_NUMBER, then
``GetRecords`` with ``Limit=1``): if that record was created before the run started, aggregation
is behind and the run waits, or leaves its invoices as drafts (``waiting_for_usage``).

Lambda's stream records do not name their shard, so a batch's shard is found from the
``DescribeStream`` sequence-number ranges (cached; refreshed on a miss). Should two ranges ever
both contain a batch's first record, the candidate is confirmed by reading that record back from
the shard. A batch whose shard cannot be found writes no checkpoint: the run then sees the old
checkpoint and waits, which is safe (never a wrong "caught up").

Cost per billing run: one ``DescribeStream`` page per 100 shards, one ``Query`` of the
checkpoints, and per shard not known to be finished one ``GetShardIterator`` + one ``GetRecords``
(well inside the 5 reads per second per shard that DynamoDB Streams allows, which Lambda's
poller shares). ``lag()`` for health checks is cached so that a public endpoint cannot spend
those reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_events import created_epoch_s
from meterbill.ports import Checkpoint, UsageLag

log = logging.getLogger(__name__)
PK = "STREAMPOS"
SEQ_WIDTH = 40          # DynamoDB Streams sequence numbers are 21 to 40 digits: pad to compare as text
EMPTY_PAGES = 4         # GetRecords may return empty pages before a shard's records


def padded(seq: str) -> str:
    return seq.rjust(SEQ_WIDTH, "0")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _shard_created_s(shard_id: str) -> float | None:
    """``shardId-00000001541626099285-f35f62ef``: the middle part is the creation time in epoch ms."""
    parts = shard_id.split("-")
    try:
        return int(parts[1]) / 1000 if len(parts) >= 3 else None
    except ValueError:
        return None


class StreamWatermark:
    def __init__(self, streams: Any, ddb: Any, events_table: str, billing_table: str, *,
                 settle_s: float = 1.0, max_wait_s: float = 20.0, poll_s: float = 0.25, cache_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time) -> None:
        self._streams = streams
        self._ddb = ddb
        self._events_table = events_table
        self._table = billing_table
        self._settle_s = settle_s
        self._max_wait_s = max_wait_s
        self._poll_s = poll_s
        self._cache_s = cache_s
        self._sleep = sleep
        self._wall = wall
        self._arn: str | None = None
        self._shard_list: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, UsageLag | None] | None = None

    # -- the stream's shape -------------------------------------------------------------
    def _stream_arn(self) -> str:
        if self._arn is None:
            table = self._ddb.describe_table(TableName=self._events_table)["Table"]
            self._arn = str(table["LatestStreamArn"])
        return self._arn

    def _shards(self, refresh: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            if self._shard_list is None or refresh:
                shards: list[dict[str, Any]] = []
                kwargs: dict[str, Any] = {"StreamArn": self._stream_arn()}
                while True:
                    desc = self._streams.describe_stream(**kwargs)["StreamDescription"]
                    shards += desc.get("Shards", [])
                    last = desc.get("LastEvaluatedShardId")
                    if not last:
                        break
                    kwargs["ExclusiveStartShardId"] = last
                self._shard_list = shards
            return self._shard_list

    @staticmethod
    def _contains(shard: dict[str, Any], seq: int) -> bool:
        rng = shard.get("SequenceNumberRange", {})
        start, end = rng.get("StartingSequenceNumber"), rng.get("EndingSequenceNumber")
        return (start is None or int(start) <= seq) and (end is None or seq <= int(end))

    def _reads_back(self, shard: str, seq: str) -> bool:
        try:
            it = self._streams.get_shard_iterator(StreamArn=self._stream_arn(), ShardId=shard,
                                                  ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=seq)
            records = self._streams.get_records(ShardIterator=it["ShardIterator"], Limit=1)["Records"]
        except ClientError:
            return False
        return bool(records) and records[0]["dynamodb"]["SequenceNumber"] == seq

    def shard_of(self, seq: str) -> str | None:
        """The shard holding the record with sequence number ``seq`` (None if it cannot be told)."""
        return self.shards_of([seq])[seq]

    def shards_of(self, seqs: Iterable[str]) -> dict[str, str | None]:
        """``shard_of`` for many sequence numbers, refreshing the shard list at most once."""
        out: dict[str, str | None] = {}
        todo = sorted(set(seqs))
        for refresh in (False, True):
            if not todo:
                break
            shards = self._shards(refresh)
            left = []
            for seq in todo:
                n = int(seq)
                found = [s["ShardId"] for s in shards if self._contains(s, n)]
                if len(found) == 1:
                    out[seq] = str(found[0])
                elif len(found) > 1:
                    confirmed = [s for s in found if self._reads_back(s, seq)]
                    out[seq] = str(confirmed[0]) if len(confirmed) == 1 else None
                else:
                    left.append(seq)
            todo = left
        return {**out, **{seq: None for seq in todo}}

    def progress(self, seqs: Iterable[str]) -> dict[str, Checkpoint | None]:
        """Per sequence number, the checkpoint of the shard holding it (one consistent Query of
        the checkpoints; the shard list is cached)."""
        shards = self.shards_of(seqs)
        if not shards:
            return {}
        ckpts = self.checkpoints()
        out: dict[str, Checkpoint | None] = {}
        for seq, shard in shards.items():
            ck = ckpts.get(shard) if shard else None
            out[seq] = Checkpoint(ck["seq"], ck["applied_at"]) if ck and ck["applied_at"] is not None else None
        return out

    # -- the aggregator's side ------------------------------------------------------------
    def applied(self, first_seq: str, last_seq: str, last_created_s: float | None) -> None:
        """Record that every record of the shard up to ``last_seq`` is applied. Monotonic: an
        older checkpoint never overwrites a newer one (a redelivered batch). This is the batch's
        one bookkeeping write: it also tells a redelivery of the batch that it is done, and lets
        bucket writes drop the batch's markers (services/aggregation.py)."""
        shard = self.shard_of(first_seq)
        if shard is None:
            log.warning("stream batch %s..%s: shard not found; checkpoint not advanced (billing runs "
                        "will wait until a later batch of that shard advances it)", first_seq, last_seq)
            return
        values = {":s": {"S": padded(last_seq)}, ":a": {"N": repr(self._wall())}}
        update = "SET seq = :s, applied_at = :a"
        if last_created_s is not None:
            update += ", created = :c"
            values[":c"] = {"N": repr(float(last_created_s))}
        try:
            self._ddb.update_item(TableName=self._table, Key={"pk": {"S": PK}, "sk": {"S": shard}},
                                  UpdateExpression=update, ExpressionAttributeValues=values,
                                  ConditionExpression="attribute_not_exists(seq) OR seq < :s")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": PK}}, "ConsistentRead": True}
        while True:
            resp = self._ddb.query(**kwargs)
            for item in resp.get("Items", []):
                out[item["sk"]["S"]] = {"seq": item["seq"]["S"].lstrip("0") or "0",
                                        "created": float(item["created"]["N"]) if "created" in item else None,
                                        "applied_at": float(item["applied_at"]["N"]) if "applied_at" in item else None}
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # -- the billing run's side -----------------------------------------------------------
    def _first_unapplied(self, shard: dict[str, Any], ckpt: dict[str, Any] | None) -> float | None | str:
        """Creation time of the first record after the checkpoint; None when there is none;
        "done" when the shard is closed and read to its end."""
        shard_id = shard["ShardId"]
        end = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        if ckpt is not None and end is not None and int(ckpt["seq"]) >= int(end):
            return "done"
        kwargs: dict[str, Any] = {"StreamArn": self._stream_arn(), "ShardId": shard_id}
        if ckpt is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=ckpt["seq"])
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        iterator = self._streams.get_shard_iterator(**kwargs).get("ShardIterator")
        for _ in range(EMPTY_PAGES):
            if not iterator:
                return "done"           # a closed shard, read to its end
            resp = self._streams.get_records(ShardIterator=iterator, Limit=1)
            records = resp.get("Records", [])
            if records:
                created = created_epoch_s(records[0]["dynamodb"].get("ApproximateCreationDateTime"))
                return created if created is not None else 0.0
            iterator = resp.get("NextShardIterator")
        return None

    def _running_rebuild(self) -> UsageLag | None:
        """A usage rebuild in progress (its buckets are being re-derived): usage is not complete."""
        resp = self._ddb.query(TableName=self._table, KeyConditionExpression="pk = :p", ConsistentRead=True,
                               ExpressionAttributeValues={":p": {"S": "REBUILD"}})
        running = [i for i in resp.get("Items", []) if i.get("running", {}).get("BOOL")]
        if not running:
            return None
        first = min(running, key=lambda i: int(i["mark_ms"]["N"]))
        mark_s = int(first["mark_ms"]["N"]) / 1000
        return UsageLag(f"rebuild:{first['meter']['S']}:{first['sk']['S']}", _iso(mark_s),
                        max(0.0, self._wall() - mark_s), "usage_rebuild")

    def check(self, cutoff_s: float) -> UsageLag | None:
        """A running usage rebuild, or the first shard with an unapplied record created before
        ``cutoff_s`` (epoch s)."""
        rebuilding = self._running_rebuild()
        if rebuilding is not None:
            return rebuilding
        ckpts = self.checkpoints()
        now = self._wall()
        for shard in self._shards(refresh=True):
            shard_id = shard["ShardId"]
            born = _shard_created_s(shard_id)
            if shard_id not in ckpts and born is not None and born > cutoff_s + 1:
                continue              # created after the cutoff: holds nothing older
            try:
                first = self._first_unapplied(shard, ckpts.get(shard_id))
            except ClientError as exc:
                log.warning("usage watermark: shard %s not readable (%s)", shard_id, exc)
                return UsageLag(shard_id, "", 0.0, "shard_unreadable")
            # ApproximateCreationDateTime is rounded down to the second: compare conservatively
            if isinstance(first, float) and first < cutoff_s:
                return UsageLag(shard_id, _iso(first), max(0.0, now - first))
        return None

    def wait(self, max_wait_s: float | None = None) -> UsageLag | None:
        cutoff = self._wall()
        budget = self._max_wait_s if max_wait_s is None else max_wait_s
        if self._settle_s:
            self._sleep(self._settle_s)     # a write's stream record becomes readable shortly after
        started = time.monotonic()
        while True:
            lag = self.check(cutoff)
            if lag is None or time.monotonic() - started >= budget:
                if lag is not None:
                    log.warning("aggregation is behind: %s", lag.as_dict())
                return lag
            self._sleep(self._poll_s)

    def lag(self) -> UsageLag | None:
        now = self._wall()
        if self._cached is None or now - self._cached[0] >= self._cache_s:
            self._cached = (now, self.check(now))
        return self._cached[1]


def records_between(streams: Any, stream_arn: str, shard: str, first_seq: str, last_seq: str,
                    page: int = 1000) -> list[dict[str, Any]]:
    """The stream records of ``shard`` from ``first_seq`` through ``last_seq`` (a batch Lambda gave
    up on, as its on-failure destination names it), in order. Re-applying them with the same first
    record keeps the batch's identity, so whatever the failed attempts applied is skipped."""
    it = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                    SequenceNumber=first_seq).get("ShardIterator")
    out: list[dict[str, Any]] = []
    last, empty = int(last_seq), 0
    while it and empty < EMPTY_PAGES:
        resp = streams.get_records(ShardIterator=it, Limit=page)
        records = resp.get("Records", [])
        empty = 0 if records else empty + 1
        for rec in records:
            if int(rec["dynamodb"]["SequenceNumber"]) > last:
                return out
            out.append(rec)
        if out and int(out[-1]["dynamodb"]["SequenceNumber"]) == last:
            return out
        it = resp.get("NextShardIterator")
    return out
