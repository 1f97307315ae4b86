"""Moved to ``meterbill/local/fakes/hubspot.py`` (also the local stack's vendor stand-in)."""

from meterbill.local.fakes.hubspot import *  # noqa: F401,F403
