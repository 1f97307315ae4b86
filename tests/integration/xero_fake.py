"""Moved to ``meterbill/local/fakes/xero.py`` (also the local stack's vendor stand-in)."""

from meterbill.local.fakes.xero import *  # noqa: F401,F403
