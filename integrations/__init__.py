"""Vendor plugins: one package per vendor, each implementing ``meterbill.integration.contract``
and registered through the ``meterbill.integrations`` entry-point group (docs/integrations.md)."""
