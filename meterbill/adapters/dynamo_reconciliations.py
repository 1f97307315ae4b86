"""Billing table: reconciliation runs and their findings (services/reconciliation.py).

  RECON#<id> / RECON        the run: period, scope, status, summary, the recount's cost, and
                            ``pages``: how many finding pages this run wrote
  RECON#<id> / F#<000001>   one page of up to ``page_size`` findings (a list), in the order found

Pages, not one item per finding: 10,000 findings are 100 PutItems (a page of 100 findings is
~50 KB, far below the 400 KB item limit), and a page of the API is one GetItem. A re-run under
the same id rewrites pages 1..n and its record says n: a longer earlier run's pages beyond n are
never shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meterbill.adapters.dynamo_table import DynamoTable
from meterbill.services.errors import InvalidField

PAGE_SIZE = 100


class ReconciliationItems(DynamoTable):
    def __init__(self, client: Any, table: str, page_size: int = PAGE_SIZE) -> None:
        super().__init__(client, table)
        self._page_size = page_size

    def put_reconciliation(self, doc: Mapping[str, Any]) -> None:
        self._put({**doc, "pk": f"RECON#{doc['id']}", "sk": "RECON"})

    def get_reconciliation(self, recon_id: str) -> dict[str, Any] | None:
        found = self._get(f"RECON#{recon_id}", "RECON")
        return None if found is None else {k: v for k, v in found.items() if k not in ("pk", "sk")}

    def put_findings(self, recon_id: str, findings: Sequence[Mapping[str, Any]]) -> int:
        """Write the findings a page per item; returns the number of pages (record it on the run)."""
        pages = [findings[i:i + self._page_size] for i in range(0, len(findings), self._page_size)]
        for n, chunk in enumerate(pages, 1):
            self._put({"pk": f"RECON#{recon_id}", "sk": f"F#{n:06d}", "findings": list(chunk)})
        return len(pages)

    def findings(self, recon_id: str, pages: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of findings (``cursor``: the page number the previous answer gave) and the next
        page's cursor, None after the last of the run's ``pages``."""
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and 1 < int(cursor) <= max(pages, 1)):
            raise InvalidField("cursor", "is not a cursor returned by this listing: pass next_cursor unchanged",
                               "invalid_cursor")
        n = int(cursor or 1)
        found = self._get(f"RECON#{recon_id}", f"F#{n:06d}") if n <= pages else None
        return (list(found["findings"]) if found else []), (str(n + 1) if n < pages else None)
