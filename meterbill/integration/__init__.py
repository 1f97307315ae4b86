"""The integration contract: what every vendor module (``integrations/<name>/``) implements.

A ports-like layer: it imports ``meterbill.domain`` only, and never a vendor SDK. The records and
the ``Protocol``\\ s are in ``contract``; the payment status order and the idempotency keys are
pure functions (``payments``, ``keys``); ``settings`` holds the redacting per-vendor settings;
``registry`` finds, validates and builds the plugins. See docs/integrations.md.
"""
