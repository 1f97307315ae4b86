"""Integration settings from AWS: SSM Parameter Store or Secrets Manager (boto3).

- Parameter Store: one parameter per setting under ``<path>/<vendor>/``, e.g.
  ``/meterbill/stripe/api_key`` (SecureString) and ``/meterbill/stripe/api_base`` (String). Read
  with one ``GetParametersByPath`` (decrypted, paginated); a SecureString is secret whatever its
  name.
- Secrets Manager: one secret per vendor, ``<prefix><vendor>`` (e.g. ``meterbill/stripe``), whose
  ``SecretString`` is a JSON object of settings.

A setting the vendor rotates (``IntegrationSettings.store``: Xero's refresh token) is written back
where it was read: ``PutParameter`` (SecureString, overwrite) under the same path, or
``PutSecretValue`` of the vendor's JSON with that one setting replaced.

Errors name the parameter path or secret id, never a value. Clients are passed in (bootstrap).
"""

from __future__ import annotations

import json
from typing import Any

from meterbill.integration.errors import ConfigError
from meterbill.integration.settings import IntegrationSettings


class ParameterStoreSettings:
    def __init__(self, ssm_client: Any, path: str = "/meterbill") -> None:
        self._ssm = ssm_client
        self._path = "/" + path.strip("/")

    def load(self, vendor: str) -> IntegrationSettings:
        prefix = f"{self._path}/{vendor}/"
        values: dict[str, str] = {}
        secure: set[str] = set()
        for page in self._ssm.get_paginator("get_parameters_by_path").paginate(
                Path=prefix, Recursive=False, WithDecryption=True):
            for param in page["Parameters"]:
                name = param["Name"][len(prefix):].lower()
                values[name] = param["Value"]
                if param.get("Type") == "SecureString":
                    secure.add(name)
        return IntegrationSettings(vendor, values, secure, saver=lambda name, value: self._ssm.put_parameter(
            Name=f"{prefix}{name}", Value=value, Type="SecureString", Overwrite=True))


class SecretsManagerSettings:
    def __init__(self, secrets_client: Any, prefix: str = "meterbill/") -> None:
        self._sm = secrets_client
        self._prefix = prefix

    def load(self, vendor: str) -> IntegrationSettings:
        secret_id = f"{self._prefix}{vendor}"
        try:
            raw = self._sm.get_secret_value(SecretId=secret_id)["SecretString"]
        except self._sm.exceptions.ResourceNotFoundException:
            raise ConfigError(vendor, [f"secret {secret_id!r} does not exist"]) from None
        try:
            values = json.loads(raw)
        except ValueError:
            values = None  # never echo the text: it is the secret
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ConfigError(vendor, [f"secret {secret_id!r} must be a JSON object of string settings"])
        # secret by name (api_key, webhook_secret…); plain ones (api_base) stay readable with get()
        return IntegrationSettings(vendor, {k.lower(): v for k, v in values.items()},
                                   saver=lambda name, value: self._save(secret_id, name, value))

    def _save(self, secret_id: str, name: str, value: str) -> None:
        """One setting replaced in the vendor's JSON secret (read again first: another setting may
        have changed since this process read it)."""
        values = json.loads(self._sm.get_secret_value(SecretId=secret_id)["SecretString"])
        values[name] = value
        self._sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(values))
