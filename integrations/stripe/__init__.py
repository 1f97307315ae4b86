"""Stripe: every final invoice as a Stripe invoice exactly once; payments back through webhooks.
See ``plugin.py`` and docs/integrations.md ("Stripe")."""

from integrations.stripe.plugin import StripeIntegration

__all__ = ["StripeIntegration"]
