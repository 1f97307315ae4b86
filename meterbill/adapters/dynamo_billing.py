"""Billing table (single-table design): catalog, usage buckets, invoices, counters, keys.

Item layout (pk / sk):
  METER#<code> / METER        gsi1: METERS / <code>
  PLAN#<code>  / PLAN         gsi1: PLANS  / <code>
  PLAN#<code>  / V#<version>  every saved version, immutable (re-rating closed periods)
  CUS#<id>     / PROFILE      gsi1: CUSTOMERS / <id>     gsi2: DUE / <next period end>#<id>
  CUS#<id>     / LATE#<period start>      late usage marker (re-rating work list)
  CUS#<id>     / DISC#<discount id>       a discount and how often it has been applied
  CUS#<id>     / GRANT#<grant id>         prepaid credit: amount, remaining, expiry
  CUS#<id>     / AUDIT#<at>#<id>          a privacy action (export, erase): who and when
  ERASURE      / <customer>               an erasure whose raw events still await the sweep (its key)
  PROG#<customer> / PROG      gsi1: PROGRESSIVE / <customer>   billed by threshold (progressive billing)
  PENDING#<customer> / PENDING  gsi1: PENDING / <customer>   usage for a customer not created yet
  U#<customer> / <hour start:012d>|<meter>#<group>    usage item: the hour's four 15-minute cells
                                          (c: {"0".."3": cell}), batch markers (ap), version (v);
                                          while a usage rebuild runs, pending cells (pc) and the
                                          rebuild that last rewrote it (rb); no GSI: 1 write per
                                          item and stream batch
  U#<customer> / <bucket start:012d>#<meter>#<group>  legacy one-cell item (15 minutes), written
                                          before hour items; still read, never written by the aggregator
  UV#<customer> / <item sk>#<page id>     sealed page of a cell's per-event values or distinct
                                          values (unique_count), immutable
  INV#<id>     / INVOICE      gsi1: CUSINV#<customer> / <period start>   gsi2: INVOICES / <number>
  COUNTER#invoice / COUNTER   gapless invoice sequence (COUNTER#credit_note: credit notes)
  CN#<id>      / CREDITNOTE   gsi1: CN#<invoice id> / <number>   gsi2: CREDITNOTES / <number>
  KEY#<sha256> / KEY          gsi1: KEYS / <public key id>   API key (hash only; revoked_at kept)
  DEADLETTER / <batch>#<key>  usage the aggregator could not apply (undecodable, unstorable)
  STREAMPOS / <shard id>      the aggregator's checkpoint per stream shard (the usage watermark; a
                              batch it covers is done: its one bookkeeping write)
  REBUILD / <rebuild id>      a usage rebuild: meter, scope, mark, running (read by the aggregator once
                              per batch; TTL 25 h after its mark once done)
  RUN#<id>     / RUN          gsi1: RUNS / <started_at>#<id>   a billing run: status, counters, dispatch cursor
  RUN#<id>     / OUT#<kind>#<customer>   one customer's outcome in that run (gsi1 while waiting/failed)
  NUMBERING / <created_at>#<invoice id>   a committed invoice waiting for its gapless number
  ANOM#<customer> / <window start>#<meter>#<kind>   a usage anomaly (adapters/dynamo_anomalies.py)
  WHEP / EP#<id>, WHEP#<id> / SECRET | DLV#<at>#<msg id>   outbound webhook endpoints, their secrets
                              and deliveries (meterbill/adapters/dynamo_webhooks.py)
  INV#<id>     / PAY#<payment id>   a payment on the invoice (dynamo_collect.py); the invoice item's
                              gsi3: OPEN / <due_at> while unpaid, COLLECTIONS / <at> after dunning
"""

from __future__ import annotations
from meterbill.adapters.dynamo_anomalies import AnomalyItems
from meterbill.adapters.dynamo_catalog import CatalogItems
from meterbill.adapters.dynamo_collect import CollectItems
from meterbill.adapters.dynamo_invoices import InvoiceItems
from meterbill.adapters.dynamo_keys import KeyItems
from meterbill.adapters.dynamo_privacy import PrivacyItems
from meterbill.adapters.dynamo_runs import RunItems
from meterbill.adapters.dynamo_sync import SyncItems
from meterbill.adapters.dynamo_usage import UsageItems
from meterbill.adapters.dynamo_webhooks import WebhookItems


class DynamoBillingStore(CatalogItems, UsageItems, InvoiceItems, KeyItems, PrivacyItems, RunItems, SyncItems,
                         AnomalyItems, WebhookItems, CollectItems):
    """The billing store port (``ports.BillingStore``), one aggregate per module over one table."""
