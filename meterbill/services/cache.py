"""A tiny time-bounded memo for catalog reads on hot paths (meters, customers, plans)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TTLValue(Generic[T]):
    def __init__(self, load: Callable[[], T], ttl_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._load, self._ttl, self._mono = load, ttl_s, monotonic
        self._value: T | None = None
        self._at = -1e18

    def get(self) -> T:
        now = self._mono()
        if self._value is None or now - self._at > self._ttl:
            self._value = self._load()
            self._at = now
        return self._value

    def invalidate(self) -> None:
        self._value = None


class TTLMap(Generic[T]):
    """Per-key memo; ``load_many`` fetches only the keys missing or expired."""

    def __init__(self, load_many: Callable[[list[str]], dict[str, T]], ttl_s: float,
                 monotonic: Callable[[], float] = time.monotonic, max_size: int = 100_000) -> None:
        self._load, self._ttl, self._mono, self._max = load_many, ttl_s, monotonic, max_size
        self._data: dict[str, tuple[float, T | None]] = {}

    def get_many(self, keys: set[str]) -> dict[str, T]:
        now = self._mono()
        missing = [k for k in keys if k not in self._data or now - self._data[k][0] > self._ttl]
        if missing:
            if len(self._data) > self._max:
                self._data.clear()
            loaded = self._load(missing)
            for k in missing:
                self._data[k] = (now, loaded.get(k))
        out = {}
        for k in keys:
            v = self._data[k][1]
            if v is not None:
                out[k] = v
        return out

    def invalidate(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
