"""Outbound webhooks: meterbill's events POSTed, signed (Standard Webhooks), to the operator's
endpoints. See ``plugin.py`` and docs/integrations.md ("Outbound webhooks")."""

from integrations.webhooks.plugin import WebhooksIntegration

__all__ = ["WebhooksIntegration"]
