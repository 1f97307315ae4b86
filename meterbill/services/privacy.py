"""Data privacy (GDPR / CCPA): export everything meterbill holds about a customer; erase what no
law requires to be kept. Every export and erasure is audited (who, when) under the customer.

Kept by an erasure (tax law: issued invoices and credit notes, EU 10 years): the invoices and
credit notes with the billing name, address and tax id as issued, the profile's billing name,
address and tax id (every later invoice and credit note needs them), money terms (plan history,
discounts, credit grants), amounts and quantities. Removed: e-mail and metadata (profile, and
the customer copy on every invoice and credit note). Pseudonymised (domain/pseudonyms.py): the
personal values in usage buckets (dimension groups, unique_count values) and dead letters at
once; in raw events by the next sweep, a Scan of the events table (no customer index) that
serves every pending erasure and raw-event export at once. docs/decisions.md, 2026-12-01.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from meterbill.domain.instants import iso
from meterbill.domain.meters import BucketState, Meter, group_values, quantity
from meterbill.domain.pseudonyms import Pseudonyms, kept_values
from meterbill.ports import Clock, EventScan, PrivacyStore, StoredBucket, UsageItem, UsageWatermark
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import Conflict, NotFound

PROFILE_PERSONAL = ("email", "metadata")      # removed from the profile
DOCUMENT_PERSONAL = ("email",)                # removed from the customer copy on invoices, credit notes
KEPT = {"invoices and credit notes": "as issued, with the billing name, address and tax id (tax law)",
        "profile": "billing name, address, tax id and terms: later invoices need them",
        "usage": "quantities and amounts; personal values pseudonymised",
        "money": "plan history, discounts, credit grants, late-usage markers"}
SWEEP_HOW = ("raw events are scanned offline: `meterbill privacy sweep` (one Scan of the events table serves "
             "every pending erasure and export; run it at least monthly)")
USAGE_WAIT_S = 5.0   # an erasure waits at most this long for aggregation to catch up
RETRIES = 5
Who = Mapping[str, Any]


class PrivacyService:
    def __init__(self, store: PrivacyStore, events: EventScan, catalog: CatalogService, clock: Clock,
                 watermark: UsageWatermark) -> None:
        self._store = store
        self._events = events
        self._catalog = catalog
        self._clock = clock
        self._watermark = watermark

    # -- export --------------------------------------------------------------------------
    def export(self, customer_id: str, who: Who) -> dict[str, Any]:
        records = self._store.customer_records(customer_id)
        profile = next((r for r in records if r["sk"] == "PROFILE"), None)
        pending = self._store.get_pending(customer_id)
        if profile is None and pending is None:
            raise NotFound(f"customer '{customer_id}' does not exist", field="id")
        now = iso(self._clock())
        self._audit(customer_id, "export", who, now, {})  # first: the export lists itself
        invoices = self._store.all_invoices(customer_id)
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            by_kind[r["sk"].split("#", 1)[0]].append(r)
        erasure = self._store.get_erasure(customer_id)
        return {
            "customer_id": customer_id, "exported_at": now, "profile": profile,
            "discounts": by_kind["DISC"], "credit_grants": by_kind["GRANT"], "late_usage_markers": by_kind["LATE"],
            "pending_usage": pending, "invoices": invoices,
            "credit_notes": [n for inv in invoices for n in self._store.all_credit_notes(inv["id"])],
            "usage": self._usage_summary(customer_id), "dead_letters": self._store.dead_letters_of(customer_id),
            "raw_events": {"included": False, "why": "the events table has no customer index; finding one "
                           "customer's events reads the whole table", "how": SWEEP_HOW + " with --export-events"},
            "erasure": None if erasure is None else {"requested_at": erasure["requested_at"],
                                                     "raw_events": "awaiting the sweep"},
            "audit": [*sorted(self._store.customer_items("audit", customer_id), key=lambda a: a["sk"])],
        }

    def _usage_summary(self, customer_id: str) -> dict[str, Any]:
        """Per meter and calendar month (UTC): buckets, events, the meter's value, per dimension group."""
        items = self._store.usage_items(customer_id)
        self._store.read_item_pages(items)
        buckets = [b for i in items for b in i.buckets()]
        meters = self._meters()
        cells: dict[str, dict[str, list[StoredBucket]]] = defaultdict(lambda: defaultdict(list))
        for b in buckets:
            cells[b.meter][datetime.fromtimestamp(b.start_s, timezone.utc).strftime("%Y-%m")].append(b)
        out = []
        for code, months in sorted(cells.items()):
            meter = meters.get(code)
            agg = meter.aggregation if meter else "count"
            rows = []
            for month, bs in sorted(months.items()):
                row: dict[str, Any] = {"month": month, "buckets": len(bs), "events": sum(b.state.count for b in bs),
                                       "value": format(quantity(agg, [b.state for b in bs]), "f")}
                if meter and meter.group_by:
                    groups: dict[str, list[BucketState]] = defaultdict(list)
                    for b in bs:
                        groups[b.group].append(b.state)
                    row["groups"] = [{"group": group_values(meter, g), "value": format(quantity(agg, s), "f")}
                                     for g, s in sorted(groups.items())]
                rows.append(row)
            out.append({"meter": code, "aggregation": agg, "months": rows})
        return {"buckets": len(buckets), "meters": out}

    # -- erase ---------------------------------------------------------------------------
    def erase(self, customer_id: str, who: Who, reason: str | None = None) -> dict[str, Any]:
        profile = self._store.get_customer(customer_id)
        if profile is None and self._store.get_pending(customer_id) is None:
            raise NotFound(f"customer '{customer_id}' does not exist", field="id")
        lag = self._watermark.wait(USAGE_WAIT_S)
        if lag is not None:  # a batch still to apply would write the old dimension groups again
            raise Conflict(f"aggregation is {lag.age_s:.0f} s behind; retry the erasure in a minute", field="id")
        now = iso(self._clock())
        erasure = self._store.start_erasure(customer_id, {"key": secrets.token_hex(32), "requested_at": now,
                                                          "by": dict(who), "reason": reason})
        pseudonyms = self._pseudonyms(bytes.fromhex(erasure["key"]), profile)
        result: dict[str, Any] = {"profile_fields_removed": self._erase_profile(customer_id, now)}
        invoices = self._store.all_invoices(customer_id)
        marks = {"personal_data_erased_at": now}
        result["invoices"] = sum(self._store.scrub_customer_copy("invoice", i["id"], DOCUMENT_PERSONAL, marks)
                                 for i in invoices)
        result["credit_notes"] = sum(self._store.scrub_customer_copy("credit_note", n["id"], DOCUMENT_PERSONAL, marks)
                                     for i in invoices for n in self._store.all_credit_notes(i["id"]))
        result["usage_buckets_pseudonymised"] = self._erase_usage(customer_id, pseudonyms)
        result["dead_letters_pseudonymised"] = self._erase_dead_letters(customer_id, pseudonyms)
        result["raw_events"] = "pending: " + SWEEP_HOW
        self._audit(customer_id, "erase", who, now, {"reason": reason, "result": result})
        return {"customer_id": customer_id, "erased_at": now, **result, "kept": KEPT}

    def _pseudonyms(self, key: bytes, profile: Mapping[str, Any] | None) -> Pseudonyms:
        overrides = [h.get("price_overrides") or {} for h in (profile or {}).get("plan_history") or ()]
        kept = kept_values(self._meters().values(), self._store.plan_versions(), overrides)
        return Pseudonyms(key, kept)

    def _meters(self) -> dict[str, Meter]:
        return {m.code: m for ms in self._catalog.meters_by_type(fresh=True).values() for m in ms}

    def _erase_profile(self, customer_id: str, now: str) -> list[str]:
        for _ in range(RETRIES):
            current = self._store.get_customer(customer_id)
            if current is None:
                return []
            removed = [f for f in PROFILE_PERSONAL if current.get(f)]
            if not removed:
                return []
            doc = {k: v for k, v in current.items() if k not in PROFILE_PERSONAL}
            doc.update(personal_data_erased_at=now, updated_at=now, version=int(current["version"]) + 1)
            try:
                self._store.put_customer(doc, int(current["version"]))
                return removed
            except Conflict:
                continue
        raise Conflict(f"customer '{customer_id}' kept changing; retry the erasure", field="id")

    def _erase_usage(self, customer_id: str, pseudonyms: Pseudonyms) -> int:
        """Pseudonymise every usage item; returns how many quarter-hour buckets changed."""
        meters = self._meters()
        changed = 0
        for item in self._store.usage_items(customer_id):
            meter = meters.get(item.meter)
            if meter is None or not (meter.group_by or meter.aggregation == "unique_count"):
                continue
            for _ in range(RETRIES):
                done = self._rewrite(item, meter, pseudonyms)
                if done is not None:
                    changed += done
                    break
                fresh = self._store.get_usage_items([item.key], legacy=item.legacy).get(item.key)
                if fresh is None:
                    break
                item = fresh
            else:
                raise Conflict(f"usage of customer '{customer_id}' kept changing; retry the erasure", field="id")
        self._store.delete_keys(self._store.orphan_pages(customer_id))  # the replaced items' old pages
        return changed

    def _rewrite(self, item: UsageItem, meter: Meter, pseudonyms: Pseudonyms) -> int | None:
        """The number of buckets (cells) rewritten (0: the item holds no personal value), or None on
        a concurrent change."""
        group = pseudonyms.group(meter, item.group)
        self._store.read_item_pages([item])
        visible = {b.start_s: b.state for b in item.buckets()}   # pending usage (a finished rebuild's) folded in
        cells = {at: BucketState(st.count, st.sum, st.max, st.min, st.latest, pseudonyms.uniques(st.uniques),
                                 dict(st.values)) for at, st in visible.items()}
        changed = sum(1 for at, st in cells.items() if group != item.group or st.uniques != visible[at].uniques)
        if not changed:
            return 0
        key = (item.customer, item.key[1], item.meter, group)
        target = None if key == item.key else self._store.get_usage_items([key], legacy=item.legacy).get(key)
        markers = dict(item.markers)
        if target is not None:  # later usage with this value, pseudonymised by an earlier erasure
            self._store.read_item_pages([target])
            for at, st in target.cells.items():
                cells.setdefault(at, BucketState()).merge(st)
            markers.update(target.markers)
        base = target.version if target is not None else item.version if key == item.key else 0
        new = UsageItem(key, cells, markers, (base or 0) + 1, legacy=item.legacy, rebuilt=item.rebuilt)  # values paged afresh
        ok = self._store.rewrite_usage_item(item, new, target.version if target is not None else None)
        return changed if ok else None

    def _erase_dead_letters(self, customer_id: str, pseudonyms: Pseudonyms) -> int:
        meters = self._meters()
        n = 0
        for d in self._store.dead_letters_of(customer_id):
            meter = meters.get(d.get("meter", ""))
            if meter is not None and d.get("group"):
                group = pseudonyms.group(meter, d["group"])
                if group != d["group"]:
                    self._store.set_fields(d["pk"], d["sk"], {"group": group})
                    n += 1
        return n

    # -- the raw-event sweep ---------------------------------------------------------------
    def sweep(self, who: Who, export: Sequence[str] = (), sink: Callable[[str, dict[str, Any]], None] | None = None,
              segments: int = 1) -> dict[str, Any]:
        """One Scan of the events table: pseudonymise the raw events of every erasure pending at
        the start, hand the raw events of the ``export`` customers to ``sink``. Re-running is
        harmless (a pseudonymised event is left as it is)."""
        pending = self._store.pending_erasures()[: 100 - len(export)]
        erasing = {e["customer"]: e for e in pending}
        if not erasing and not export:
            return {"erasures": [], "exported": {}, "events_pseudonymised": 0}
        pseudonyms = {cid: self._pseudonyms(bytes.fromhex(e["key"]), self._store.get_customer(cid))
                      for cid, e in erasing.items()}
        counts: dict[str, int] = defaultdict(int)
        exported: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        customers = sorted(set(erasing) | set(export))

        def segment(i: int) -> None:
            for item, event in self._events.events_of(customers, i, segments):
                cid = event["customer"]
                if cid in export and sink is not None:
                    with lock:
                        sink(cid, {**event, "timestamp": iso(event["timestamp"])})
                        exported[cid] += 1
                if cid in pseudonyms:
                    props = pseudonyms[cid].properties(event["type"], event["properties"])
                    if props != event["properties"] and self._events.replace_properties(item, props):
                        with lock:
                            counts[cid] += 1

        with ThreadPoolExecutor(max(1, segments)) as pool:
            list(pool.map(segment, range(max(1, segments))))
        now = iso(self._clock())
        for cid, e in erasing.items():
            self._store.finish_erasure(cid, e["requested_at"])
            self._audit(cid, "erase_raw_events", who, now, {"erasure_requested_at": e["requested_at"],
                                                           "events_pseudonymised": counts[cid]})
        for cid in export:
            self._audit(cid, "export_raw_events", who, now, {"events": exported[cid]})
        return {"erasures": sorted(erasing), "exported": dict(exported),
                "events_pseudonymised": sum(counts.values())}

    def _audit(self, customer_id: str, action: str, who: Who, at: str, details: Mapping[str, Any]) -> None:
        entry_id = f"{at}#{secrets.token_hex(4)}"
        self._store.put_customer_item("audit", customer_id, entry_id, {
            "id": entry_id, "action": action, "at": at, "by": dict(who), **details})
