"""The integration contract's pure parts: forward-only payment status, idempotency keys,
redacting settings, and the registry that validates a plugin when it registers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbill.integration.contract import ExternalRef, Permanent, Problem
from meterbill.integration.errors import ConfigError, PluginError
from meterbill.integration.keys import MAX_KEY, idempotency_key
from meterbill.integration.payments import RANK, TERMINAL, advance, moves
from meterbill.integration.registry import Registry, contract_problems
from meterbill.integration.settings import (
    MASK,
    IntegrationSettings,
    Secret,
    enabled_integrations,
    settings_from_env,
)

# -- payment status ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "incoming", "after"), [
    (None, "open", "open"),
    ("open", "payment_failed", "payment_failed"),
    ("open", "paid", "paid"),
    ("payment_failed", "paid", "paid"),
    ("paid", "payment_failed", "paid"),          # a late failure of an earlier attempt
    ("paid", "open", "paid"),
    ("paid", "void", "paid"),                    # paid stays paid
    ("void", "paid", "void"),                    # void stays void
    ("uncollectible", "paid", "paid"),           # bad debt can still be paid (Stripe, invoices.TRANSITIONS)
    ("uncollectible", "payment_failed", "uncollectible"),
    ("payment_failed", "action_required", "payment_failed"),  # same rank: no move
])
def test_status_only_moves_forward(current: str | None, incoming: str, after: str) -> None:
    assert advance(current, incoming) == after
    assert moves(current, incoming) == (after != current)


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown payment status 'refunded'"):
        advance("open", "refunded")


@given(st.lists(st.sampled_from(sorted(RANK)), min_size=1, max_size=12))
def test_paid_stays_paid_whatever_arrives_after_in_whatever_order(events: list[str]) -> None:
    status: str | None = None
    for e in events:
        status = advance(status, e)
    assert status is not None
    assert RANK[status] == max(RANK[e] for e in events)       # the furthest status wins…
    assert status == next(e for e in events if RANK[e] == RANK[status])   # …the first of its rank stays
    terminal = [e for e in events if e in TERMINAL]
    if terminal and terminal[0] == "paid":
        assert status == "paid"                                # nothing after paid moves it


# -- idempotency keys ----------------------------------------------------------------------------------


def test_keys_are_deterministic_and_distinct_per_write() -> None:
    a = idempotency_key("stripe", "in_3f2a", "create")
    assert a == "mb:stripe:in_3f2a:create:v1" == idempotency_key("stripe", "in_3f2a", "create")
    assert idempotency_key("stripe", "in_3f2a", "line", 17) == "mb:stripe:in_3f2a:line:17:v1"
    assert idempotency_key("stripe", "in_3f2a", "create", version=2) != a
    assert idempotency_key("xero", "in_3f2a", "create") != a


def test_a_long_key_is_shortened_uniquely() -> None:
    one = idempotency_key("stripe", "x" * 300, "create")
    two = idempotency_key("stripe", "x" * 299 + "y", "create")
    assert len(one) == len(two) == MAX_KEY and one != two


@pytest.mark.parametrize("part", ["a:b", "a b", "in_1/2", "kundé"])
def test_a_part_that_is_not_a_plain_id_is_digested(part: str) -> None:
    key = idempotency_key("stripe", part, "create")
    assert key == idempotency_key("stripe", part, "create") and part not in key
    assert key.startswith("mb:stripe:h-") and key.count(":") == 4
    assert key != idempotency_key("stripe", part + "x", "create")
    with pytest.raises(ValueError, match="must not be empty"):
        idempotency_key("stripe", "", "create")


# -- settings ------------------------------------------------------------------------------------------

SECRET = "sk_test_51Hsupersecretvalue0123456789"


def test_settings_from_env_and_enabled_integrations() -> None:
    env = {"METERBILL_STRIPE_API_KEY": SECRET, "METERBILL_STRIPE_API_BASE": "http://127.0.0.1:4020",
           "METERBILL_XERO_TENANT": "t", "METERBILL_INTEGRATIONS": " stripe, xero ,stripe"}
    s = settings_from_env("stripe", env)
    assert s.names() == {"api_key", "api_base"}
    assert s.get("api_base") == "http://127.0.0.1:4020"
    secret = s.secret("api_key")
    assert isinstance(secret, Secret) and secret.reveal() == SECRET
    assert enabled_integrations(env) == ("stripe", "xero")
    assert enabled_integrations({}) == ()
    with pytest.raises(ConfigError, match="METERBILL_INTEGRATIONS: 'str ipe'"):
        enabled_integrations({"METERBILL_INTEGRATIONS": "str ipe"})


def test_a_secret_never_shows_in_repr_str_format_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    s = IntegrationSettings("stripe", {"api_key": SECRET, "webhook_secret": "whsec_abc123xyz",
                                       "account": "acct_1"}, secret={"account"})
    secret = s.secret("api_key")
    texts = [repr(s), str(s), f"{s}", repr(secret), str(secret), f"{secret}", f"{secret!r}",
             s.redact(f"Invalid API Key provided: {SECRET}")]
    with pytest.raises(KeyError) as err:
        s.get("api_key")
    texts.append(str(err.value))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").warning("settings %s key %s", s, secret)
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text and "whsec_abc123xyz" not in text and "acct_1" not in text
    assert MASK in repr(s) and "api_key" in repr(s)           # the names are shown, the values not
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(secret)


# -- the registry --------------------------------------------------------------------------------------


class GoodSink:
    name: ClassVar[str] = "good"

    def __init__(self, settings: IntegrationSettings) -> None:
        self.settings = settings

    def validate_config(self, settings: IntegrationSettings) -> list[Problem]:
        return [] if settings.secret("api_key") else [Problem("api_key", "is required")]

    def validate_invoice(self, invoice: Mapping[str, Any]) -> list[Problem]:
        return []

    def upsert_customer(self, customer: Mapping[str, Any]) -> ExternalRef:
        return ExternalRef(customer["id"])

    def find_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> ExternalRef | None:
        return None

    def push_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, idempotency_key: str,
                     dry_run: bool = False) -> ExternalRef:
        return ExternalRef(invoice["id"])

    def void_invoice(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        return invoice_ref

    def push_credit_note(self, note: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str
                         ) -> ExternalRef:
        return invoice_ref

    def record_payment(self, invoice: Mapping[str, Any], payment: Mapping[str, Any], invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef:
        return invoice_ref

    def classify(self, exc: BaseException) -> Permanent:
        return Permanent(str(exc))


def test_a_plugin_following_the_contract_registers_and_builds() -> None:
    registry = Registry()
    assert registry.register(GoodSink) is GoodSink
    registry.register(GoodSink)                      # the same class again: a no-op
    assert registry.names() == ["good"] and not registry.get("good").payment_source
    built = registry.build("good", IntegrationSettings("good", {"api_key": SECRET}))
    assert isinstance(built, GoodSink)
    with pytest.raises(ConfigError, match="good settings: api_key: is required"):
        registry.build("good", IntegrationSettings("good", {}))
    with pytest.raises(PluginError, match="no integration named 'bad'; registered: good"):
        registry.get("bad")


def _broken(**changes: Any) -> type:
    return type("Broken", (GoodSink,), changes)


def _takes(*params: str) -> Any:
    ns: dict[str, Any] = {}
    exec(f"def f(self, {', '.join(params)}): pass", ns)
    return ns["f"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"push_invoice": None}, "push_invoice must be a plain method"),
    ({"push_invoice": _takes("invoice", "customer_ref")}, "does not match the contract's push_invoice"),
    ({"push_invoice": _takes("invoice", "customer", "idempotency_key")}, "does not match the contract's"),
    ({"push_invoice": _takes("invoice", "customer_ref", "idempotency_key", "extra")},
     "extra parameter 'extra' needs a default"),
    ({"find_invoice": _takes("invoice", "*", "customer_ref")}, "parameter 'customer_ref' is keyword-only"),
    ({"classify": staticmethod(lambda exc: None)}, "classify must be a plain method"),
    ({"name": "Not A Name"}, "needs a class attribute name"),
    ({"__init__": _takes("settings", "client")}, "must be constructible as Plugin(settings)"),
    ({"parse_webhook": _takes("raw_body", "headers")}, "has no method fetch_invoice_state"),
])
def test_a_broken_plugin_fails_when_it_registers(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError, match="breaks the contract") as err:
        Registry().register(_broken(**changes))
    assert message in str(err.value)


def test_a_missing_method_is_named() -> None:
    class NoVoid:
        name = "novoid"

        def __init__(self, settings: IntegrationSettings) -> None: ...
    problems = contract_problems(NoVoid)
    assert any(p.startswith("has no method void_invoice(self, invoice") for p in problems)
    assert contract_problems(GoodSink) == [] and contract_problems(GoodSink(IntegrationSettings("good", {})))


def test_a_second_plugin_under_a_taken_name_is_refused() -> None:
    registry = Registry()
    registry.register(GoodSink)
    with pytest.raises(PluginError, match="'good' is already registered by GoodSink"):
        registry.register(type("Other", (GoodSink,), {}))


def test_plugins_are_found_through_entry_points() -> None:
    here = __name__
    good = EntryPoint("good", f"{here}:GoodSink", "meterbill.integrations")
    registry = Registry()
    assert registry.load_entry_points([good]) == ["good"]
    assert registry.get("good").factory is GoodSink
    with pytest.raises(PluginError, match="entry point 'missing' .* cannot be loaded: ModuleNotFoundError"):
        Registry().load_entry_points([EntryPoint("missing", "no_such_module:X", "meterbill.integrations")])
    with pytest.raises(PluginError, match="entry point 'other' loads a plugin named 'good'"):
        Registry().load_entry_points([EntryPoint("other", f"{here}:GoodSink", "meterbill.integrations")])


def test_step_keys_derive_from_the_write_key() -> None:
    from meterbill.integration.keys import derive

    base = idempotency_key("stripe", "in_3f2a", "push")
    assert derive(base, "item", "L3") == "mb:stripe:in_3f2a:push:v1/item/L3" == derive(base, "item", "L3")
    assert derive(base, "create") != derive(base, "finalize")
    assert len(derive("k" * 250, "item", "L3")) == MAX_KEY
    assert derive(base, "a/b").startswith(base + "/h-")
