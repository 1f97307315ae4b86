"""HubSpot: customers as companies, final invoices as HubSpot invoices, payment status and tasks.
See ``plugin.py`` and docs/integrations.md ("HubSpot")."""

from integrations.hubspot.plugin import HubSpotIntegration

__all__ = ["HubSpotIntegration"]
