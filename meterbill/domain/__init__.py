"""Pure billing domain: standard library only (no boto3, no clock, no environment)."""
