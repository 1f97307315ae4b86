"""Usage rebuilds: which of the aggregator's contributions a rebuild of usage from raw events owns
(pure; docs/decisions.md, "Rebuilding usage").

A rebuild of a meter (optionally one customer, a range of 15-minute buckets) has a *mark*: every
event accepted before it is counted by the rebuild, from the events table; every event accepted
at or after it is counted by the aggregator — into the usage item as usual once the rebuild has
rewritten the item, before that into the item's *pending* cells, which the rebuild's write folds
in. A finished rebuild keeps owning what was accepted before its mark for as long as the stream
can still deliver such an event (``OWNS_S`` after the mark).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OWNS_S = 25 * 3600        # the stream keeps records 24 h: no delivery of an older event after that
MARGIN_S = 120            # mark = start + margin; the scan waits until mark + margin


@dataclass(frozen=True, slots=True)
class Rebuild:
    id: str
    meter: str
    customer: str | None     # None: every customer
    start_s: int             # buckets whose start lies in [start_s, end_s)
    end_s: int
    mark_ms: int
    running: bool
    margin_ms: int = MARGIN_S * 1000   # the scan waits until mark + margin

    def covers(self, meter: str, customer: str, bucket_start_s: int) -> bool:
        return (meter == self.meter and (self.customer is None or customer == self.customer)
                and self.start_s <= bucket_start_s < self.end_s)

    def overlaps(self, other: Rebuild) -> bool:
        return (self.meter == other.meter and (self.customer is None or other.customer is None
                                                or self.customer == other.customer)
                and self.start_s < other.end_s and other.start_s < self.end_s)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "meter": self.meter, "customer": self.customer, "start_s": self.start_s,
                "end_s": self.end_s, "mark_ms": self.mark_ms, "running": self.running, "margin_ms": self.margin_ms}


def created_ms(rebuild_id: str) -> int:
    """When a rebuild was created: its id is ``<creation epoch ms>-<random>``."""
    head = rebuild_id.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def rebuild_from(doc: Mapping[str, Any]) -> Rebuild:
    return Rebuild(str(doc["id"]), str(doc["meter"]), doc.get("customer") or None, int(doc["start_s"]),
                   int(doc["end_s"]), int(doc["mark_ms"]), bool(doc["running"]), int(doc.get("margin_ms", MARGIN_S * 1000)))


def governing(rebuilds: Iterable[Rebuild], meter: str, customer: str, bucket_start_s: int,
              now_ms: int) -> Rebuild | None:
    """The rebuild that decides about usage of this meter, customer and bucket: of those covering
    it and still owning events, the one with the latest mark (it counts everything the earlier
    ones counted)."""
    found = [r for r in rebuilds if r.covers(meter, customer, bucket_start_s) and now_ms < r.mark_ms + OWNS_S * 1000]
    return max(found, key=lambda r: r.mark_ms, default=None)


def route(rebuild: Rebuild | None, accepted_ms: int | None, item_rebuilt_by: str | None) -> str:
    """Where the aggregator puts one contribution: ``skip`` (the rebuild counts it), ``pending``
    (accepted after the mark, item not rewritten by the running rebuild yet) or ``apply``."""
    if rebuild is None:
        return "apply"
    if accepted_ms is None or accepted_ms < rebuild.mark_ms:
        return "skip"   # an event stored without ``at`` is older than any rebuild: the scan counts it
    if rebuild.running and item_rebuilt_by != rebuild.id:
        return "pending"
    return "apply"
