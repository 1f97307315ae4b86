"""Xero: every final invoice as one ACCREC sales invoice; payments and credit notes mirrored.
See ``plugin.py`` and docs/integrations.md ("Xero")."""

from integrations.xero.plugin import XeroIntegration

__all__ = ["XeroIntegration"]
