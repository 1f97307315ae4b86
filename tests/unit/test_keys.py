"""KeyService on an in-memory store: the Authorization header, expiry, revocation and the
bounds of its caches (how many store reads a request costs)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from meterbill.services.errors import Forbidden, Unauthorized
from meterbill.services.keys import KeyService

SECRET = "mbtest_admin_0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


class MemoryKeys:
    """The key part of BillingStore, counting reads."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.reads = 0

    def put_key(self, digest: str, doc: dict[str, Any]) -> None:
        assert digest not in self.items
        self.items[digest] = dict(doc)

    def get_key(self, digest: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self.items.get(digest)
        return dict(found) if found else None


@pytest.fixture
def store() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
def keys(store: MemoryKeys) -> KeyService:
    service = KeyService(store, FakeClock())  # type: ignore[arg-type]
    service.create(["admin"], name="admin", secret=SECRET)
    return service


@pytest.mark.parametrize("header", [f"Bearer {SECRET}", f"bearer {SECRET}", f"BEARER {SECRET}",
                                    f"bEaReR {SECRET}", f"Bearer   {SECRET}", f"  Bearer {SECRET}  "])
def test_the_bearer_scheme_is_case_insensitive(keys: KeyService, header: str) -> None:
    """RFC 9110 11.1: the auth-scheme is case-insensitive; 1*SP separates it from the token."""
    assert keys.authorize(header, "admin")["name"] == "admin"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "bearer    ", SECRET, f"Basic {SECRET}",
                                    f"Bearerx {SECRET}", f"Token {SECRET}", f"Bearer {SECRET} extra"])
def test_anything_else_is_unauthorized(keys: KeyService, header: str | None) -> None:
    with pytest.raises(Unauthorized):
        keys.authorize(header, "read")


def test_scope_is_still_checked(store: MemoryKeys) -> None:
    service = KeyService(store, FakeClock())  # type: ignore[arg-type]
    service.create(["ingest"], secret="mbtest_ingest_0123456789abcdef")
    with pytest.raises(Forbidden):
        service.authorize("bearer mbtest_ingest_0123456789abcdef", "read")
