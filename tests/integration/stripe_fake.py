"""Moved to ``meterbill/local/fakes/stripe.py`` (also the local stack's vendor stand-in)."""

from meterbill.local.fakes.stripe import *  # noqa: F401,F403
