"""The HubSpot and Xero modules type-checked (mypy strict, as ``make typecheck``). Their SDKs ship
no type information, so mypy checks the modules' own code and their use of the contract; the
SDK calls themselves are checked against the vendors' OpenAPI specs by the Prism tests beside
this file."""

from __future__ import annotations

from tests.contract.test_stripe_types import mypy


def test_the_hubspot_and_xero_modules_type_check() -> None:
    result = mypy("integrations/hubspot", "integrations/xero")
    assert result.returncode == 0, result.stdout + result.stderr
