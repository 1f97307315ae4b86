"""Per-vendor settings that never show a secret (pure: the caller passes the environment in).

Locally a vendor's settings are the environment variables ``METERBILL_<VENDOR>_<SETTING>``
(``METERBILL_STRIPE_API_KEY``, ``METERBILL_STRIPE_WEBHOOK_SECRET``, ``METERBILL_STRIPE_API_BASE``);
on AWS they come from SSM Parameter Store or Secrets Manager (``meterbill/adapters/secrets.py``).
Which integrations run is ``METERBILL_INTEGRATIONS`` (comma-separated names; empty: none).

A setting is secret when its name says so (``…key``, ``…secret``, ``…token``, ``…password``) or
its store says so (an SSM SecureString). A secret is read with ``secret(name)`` as a
:class:`Secret`, whose ``str``/``repr`` is a mask: only ``reveal()`` gives the value, at the one
place that hands it to the SDK. ``get`` refuses secret names, the settings' ``repr`` lists names
only, and ``redact`` masks every secret value in a text (for vendor error messages).

A setting the vendor changes under us (Xero rotates its refresh token on every refresh) is written
back with ``store(name, value)``: the value held here changes at once, and the store the settings
came from (SSM ``PutParameter``, Secrets Manager ``PutSecretValue``; ``saver``, passed in by the
adapter) keeps it for the next cold start. Settings from the environment keep it in memory only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from meterbill.integration.errors import ConfigError

MASK = "********"
_SECRET_NAME = re.compile(r"(^|_)(key|secret|token|password|credentials?)($|_)")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
_VENDOR = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)


class Secret:
    """A secret value: masked in ``str``, ``repr``, f-strings and logs; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a Secret is not pickled")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class IntegrationSettings:
    """One vendor's settings: lower-case names (``api_key``) → string values."""

    __slots__ = ("vendor", "_values", "_secret", "_saver")

    def __init__(self, vendor: str, values: Mapping[str, str], secret: Iterable[str] = (),
                 saver: Callable[[str, str], None] | None = None) -> None:
        if not _VENDOR.fullmatch(vendor):
            raise ValueError(f"integration name {vendor!r} must be lower-case letters, digits and '_'")
        bad = sorted(n for n in values if not _NAME.fullmatch(n))
        if bad:
            raise ConfigError(vendor, [f"{bad[0]}: a setting name is lower-case letters, digits and '_'"])
        self.vendor = vendor
        self._values = MappingProxyType(dict(values))
        self._secret = frozenset(n for n in values if is_secret_name(n)) | frozenset(secret)
        self._saver = saver

    def names(self) -> frozenset[str]:
        return frozenset(self._values)

    def get(self, name: str, default: str | None = None) -> str | None:
        """A non-secret setting (an API base URL, a collection method…)."""
        if name in self._secret or is_secret_name(name):
            raise KeyError(f"{self.vendor} setting {name!r} is secret: read it with secret()")
        value = self._values.get(name)
        return default if value is None or value == "" else value

    def secret(self, name: str) -> Secret | None:
        value = self._values.get(name)
        return None if value is None or value == "" else Secret(value)

    def store(self, name: str, value: str) -> None:
        """Replace setting ``name`` (held here at once, then written to the store the settings came
        from, if it has a ``saver``): a value the vendor rotated, kept for the next cold start."""
        if not _NAME.fullmatch(name):
            raise ConfigError(self.vendor, [f"{name}: a setting name is lower-case letters, digits and '_'"])
        self._values = MappingProxyType({**self._values, name: value})
        if is_secret_name(name):
            self._secret = self._secret | {name}
        if self._saver is not None:
            self._saver(name, value)

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by the mask."""
        for name in self._secret:
            value = self._values.get(name)
            if value:
                text = text.replace(value, MASK)
        return text

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={MASK if n in self._secret else self._values[n]!r}" for n in sorted(self._values))
        return f"IntegrationSettings({self.vendor}: {shown})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("settings are not pickled")


def env_prefix(vendor: str) -> str:
    return f"METERBILL_{vendor.upper()}_"


def settings_from_env(vendor: str, env: Mapping[str, str]) -> IntegrationSettings:
    """``METERBILL_STRIPE_API_KEY=…`` → ``IntegrationSettings("stripe", {"api_key": …})``."""
    prefix = env_prefix(vendor)
    return IntegrationSettings(vendor, {k[len(prefix):].lower(): v for k, v in env.items()
                                        if k.startswith(prefix) and len(k) > len(prefix)})


def enabled_integrations(env: Mapping[str, str]) -> tuple[str, ...]:
    """``METERBILL_INTEGRATIONS="stripe, xero"`` → ``("stripe", "xero")`` (order kept, no repeats)."""
    raw = env.get("METERBILL_INTEGRATIONS", "")
    names: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if not _VENDOR.fullmatch(name):
            raise ConfigError("meterbill", [f"METERBILL_INTEGRATIONS: {name!r} is not an integration name"])
        if name not in names:
            names.append(name)
    return tuple(names)
