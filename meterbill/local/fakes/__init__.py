"""Stateful stand-ins of the vendors' APIs (Stripe, HubSpot, Xero), behind the SDKs' own HTTP
boundary: the workflow tests put them in the SDKs' HTTP clients, and `meterbill run` serves them
over HTTP behind Prism's validating proxy (``meterbill/local/vendors.py``), because Prism alone is
stateless (every create returns the spec's one example object, with other totals than ours)."""
