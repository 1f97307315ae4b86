"""The one registry of integration plugins, each checked against the contract when it registers.

A plugin is a class: ``name`` (a ClassVar), built as ``Plugin(settings)``, implementing every
method of ``InvoiceSink`` and, if it collects payments, every method of ``PaymentSource``, each
with the contract's parameters (same names, same order; extra parameters only with defaults). A
class that misses a method or gets a signature wrong fails at ``register`` with a message naming
the method, not on its first call in production.

Plugins are found through the entry-point group ``meterbill.integrations`` (declared in a
distribution's ``pyproject.toml``: ``stripe = "integrations.stripe:StripeIntegration"``), or
registered explicitly (tests, a deployment's own module). See docs/integrations.md for why this is
not pluggy.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meterbill.integration.contract import InvoiceSink, Notifier, PaymentSource
from meterbill.integration.errors import ConfigError, PluginError
from meterbill.integration.settings import IntegrationSettings

GROUP = "meterbill.integrations"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_MISSING = object()


def _protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(protocol).items()
            if inspect.isfunction(member) and not name.startswith("_")}


SINK_METHODS = _protocol_methods(InvoiceSink)
SOURCE_METHODS = _protocol_methods(PaymentSource)
NOTIFIER_METHODS = _protocol_methods(Notifier)           # optional: checked where defined


def _check_method(plugin: type, method: str, expected: inspect.Signature) -> str | None:
    member = inspect.getattr_static(plugin, method, _MISSING)
    if member is _MISSING:
        return f"has no method {method}{expected}"
    if isinstance(member, (staticmethod, classmethod)) or not callable(member):
        return f"{method} must be a plain method {method}{expected}"
    try:
        actual = inspect.signature(member)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return f"{method}: its signature cannot be read"
    want = list(expected.parameters.values())
    have = list(actual.parameters.values())
    if len(have) < len(want) or [p.name for p in have[:len(want)]] != [p.name for p in want]:
        return f"{method}{actual} does not match the contract's {method}{expected}"
    for w, h in zip(want, have):
        if h.kind != w.kind:
            return f"{method}: parameter {h.name!r} is {h.kind.description}, the contract's is {w.kind.description}"
    for extra in have[len(want):]:
        if extra.default is inspect.Parameter.empty and extra.kind not in (
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            return f"{method}: extra parameter {extra.name!r} needs a default (callers pass only the contract's)"
    return None


def contract_problems(plugin: object) -> list[str]:
    """Everything wrong with ``plugin`` as an integration class (empty: it follows the contract)."""
    if not inspect.isclass(plugin):
        return [f"{plugin!r} is not a class: register the plugin class, built as Plugin(settings)"]
    problems: list[str] = []
    name = inspect.getattr_static(plugin, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append("needs a class attribute name: lower-case letters, digits, '_' (e.g. 'stripe')")
    try:
        inspect.signature(plugin).bind(object())
    except TypeError:
        problems.append("must be constructible as Plugin(settings)")
    problems += [p for m, sig in SINK_METHODS.items() if (p := _check_method(plugin, m, sig))]
    if any(inspect.getattr_static(plugin, m, _MISSING) is not _MISSING for m in SOURCE_METHODS):
        problems += [p for m, sig in SOURCE_METHODS.items() if (p := _check_method(plugin, m, sig))]
    problems += [p for m, sig in NOTIFIER_METHODS.items()
                 if inspect.getattr_static(plugin, m, _MISSING) is not _MISSING and (p := _check_method(plugin, m, sig))]
    return problems


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    factory: Callable[[IntegrationSettings], Any]
    payment_source: bool
    notifier: bool = False


class Registry:
    def __init__(self) -> None:
        self._plugins: dict[str, Plugin] = {}

    def register(self, plugin: type) -> type:
        """Check ``plugin`` against the contract and add it (also usable as a class decorator).
        Registering the same class twice is a no-op; another class under a taken name fails."""
        problems = contract_problems(plugin)
        label = getattr(plugin, "__qualname__", repr(plugin))
        if problems:
            raise PluginError(f"integration plugin {label} breaks the contract: " + "; ".join(problems))
        name: str = plugin.name  # type: ignore[attr-defined]
        found = self._plugins.get(name)
        if found is not None and found.factory is not plugin:
            raise PluginError(f"integration {name!r} is already registered by {found.factory.__qualname__}")
        self._plugins[name] = Plugin(name, plugin, all(hasattr(plugin, m) for m in SOURCE_METHODS),
                                     all(hasattr(plugin, m) for m in NOTIFIER_METHODS))
        return plugin

    def load_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> list[str]:
        """Register every plugin declared under the ``meterbill.integrations`` entry-point group."""
        found = importlib.metadata.entry_points(group=GROUP) if entry_points is None else entry_points
        names = []
        for ep in found:
            try:
                plugin = ep.load()
            except Exception as exc:  # an import error in a plugin names the plugin
                raise PluginError(f"integration entry point {ep.name!r} ({ep.value}) cannot be loaded: "
                                  f"{type(exc).__name__}: {exc}") from exc
            self.register(plugin)
            if plugin.name != ep.name:
                raise PluginError(f"entry point {ep.name!r} loads a plugin named {plugin.name!r}")
            names.append(ep.name)
        return names

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def get(self, name: str) -> Plugin:
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginError(f"no integration named {name!r}; registered: {', '.join(self.names()) or 'none'}") \
                from None

    def build(self, name: str, settings: IntegrationSettings) -> Any:
        """The plugin ``name`` built from ``settings``, after its own ``validate_config``:
        ConfigError names every missing or invalid setting (never a secret's value)."""
        plugin = self.get(name)
        instance = plugin.factory(settings)
        problems = instance.validate_config(settings)
        if problems:
            raise ConfigError(name, problems)
        return instance


REGISTRY = Registry()
