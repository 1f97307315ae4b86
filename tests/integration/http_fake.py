"""Moved to ``meterbill/local/fakes/http.py`` (also the local stack's vendor stand-in)."""

from meterbill.local.fakes.http import *  # noqa: F401,F403
