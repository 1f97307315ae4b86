"""The Stripe module type-checked against the installed SDK's typed params (stripe 16: TypedDicts
with Literal enums). Prism's form parser drops parameters its 2023 spec does not declare, so a
misspelt or removed parameter passes Prism; mypy catches it (../shared/specs/README.md, traps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *targets], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_the_contract_and_the_stripe_module_type_check() -> None:
    result = mypy("meterbill/integration", "integrations/stripe")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_a_parameter_stripe_does_not_take(tmp_path: Path) -> None:
    bad = tmp_path / "bad_call.py"
    bad.write_text(
        "from stripe import StripeClient\n"
        "from stripe.params import InvoiceItemCreateParams\n"
        "def f(client: StripeClient) -> None:\n"
        "    params: InvoiceItemCreateParams = {'customer': 'cus_1', 'unit_amount_decimal': 1, 'bogus_param': 1}\n"
        "    client.v1.invoices.create(params={'days_until_due': 'soon'})\n")
    result = mypy(str(bad))
    assert result.returncode == 1
    assert 'Extra key "bogus_param"' in result.stdout, result.stdout
    assert '"unit_amount_decimal" has type "Decimal"' in result.stdout, result.stdout   # int is not a decimal
    assert 'bad_call.py:5: error: Argument "params" to "create" of "InvoiceService"' in result.stdout, result.stdout
