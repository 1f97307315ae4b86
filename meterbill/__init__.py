"""meterbill: usage-based billing deployed into your own AWS account."""

__version__ = "0.1.0"
