"""Settings, read from the environment in one place (the composition root calls this)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from meterbill.domain.dunning import COLLECTION_METHODS, parse_ladder
from meterbill.integration.settings import enabled_integrations

_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})", re.ASCII)


def accent_colour(value: str, name: str = "METERBILL_BRAND_ACCENT") -> str:
    """'#1F4E79', '1f4e79' or '#abc' -> '#1f4e79' / '#aabbcc'; anything else is a config error."""
    match = _HEX_COLOUR.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{name}={value!r} is not a hex colour such as '#1f4e79'")
    digits = match.group(1).lower()
    return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))


SETTINGS_SOURCES = ("env", "ssm", "secretsmanager")


def sync_queue_env(integration: str) -> str:
    """The environment variable carrying an integration's sync queue URL."""
    return f"METERBILL_SYNC_QUEUE_{integration.upper()}"


def _settings_source(value: str | None) -> str:
    source = (value or "env").strip().lower()
    if source not in SETTINGS_SOURCES:
        raise ValueError(f"METERBILL_INTEGRATION_SETTINGS must be one of {', '.join(SETTINGS_SOURCES)}, not {value!r}")
    return source


def _multiline(value: str | None) -> str:
    """Env values may hold real newlines or the two characters backslash-n."""
    return (value or "").replace("\\n", "\n").strip()


def _grace(value: str | None) -> float:
    try:
        hours = float(value) if value else 0.0
    except ValueError:
        raise ValueError(f"METERBILL_GRACE_HOURS must be a number of hours, not {value!r}") from None
    if not 0 <= hours <= 720:
        raise ValueError("METERBILL_GRACE_HOURS must be between 0 and 720")
    return hours


def _seconds(env: Mapping[str, str], name: str, default: float, most: float) -> float:
    value = env.get(name)
    try:
        seconds = float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if not 0 <= seconds <= most:
        raise ValueError(f"{name} must be between 0 and {most:g} seconds")
    return seconds


@dataclass(frozen=True)
class Settings:
    events_table: str = "meterbill-events"
    billing_table: str = "meterbill-billing"
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None   # None on AWS; moto's server URL locally
    invoice_prefix: str = "INV-"
    credit_note_prefix: str = "CN-"
    grace_hours: float = 0.0               # an ended period's invoice stays a draft this long
    seller_country: str | None = None      # ISO 3166-1 alpha-2 of the seller (EU reverse charge)
    # The usage watermark (docs/decisions.md): a billing run waits at most this long for
    # aggregation to apply every event accepted before it started, else it finalizes nothing.
    usage_wait_s: float = 20.0
    stream_settle_s: float = 1.0           # a write's stream record is readable within this
    # The close queue (billing runs fan out through SQS): its URL, how long a customer waiting for
    # usage stays off the queue, how often it is retried, and the queue's maxReceiveCount.
    close_queue_url: str | None = None
    close_wait_retry_s: float = 60.0
    close_wait_attempts: int = 5
    close_max_receives: int = 10
    # Integrations (docs/integrations.md): which run here, each one's sync queue
    # (METERBILL_SYNC_QUEUE_<NAME>), and where their settings come from: ``env`` (locally,
    # METERBILL_<VENDOR>_<SETTING>), ``ssm`` (/meterbill/<vendor>/…) or ``secretsmanager``.
    integrations: tuple[str, ...] = ()
    sync_queue_urls: tuple[tuple[str, str], ...] = ()
    integration_settings: str = "env"
    # Invoice documents (HTML/PDF): the seller's branding and payment instructions.
    brand_name: str = ""
    brand_address: str = ""                # multi-line
    brand_logo: str | None = None          # file path, data:image/png|jpeg;base64,… or https URL (HTML only)
    brand_accent: str = "#1f4e79"          # validated, normalised '#rrggbb'
    brand_footer: str = ""
    bank_details: str = ""                 # multi-line wire instructions
    support_email: str | None = None
    # Anomaly alerts (issue 11): POSTed as JSON here until the outbound-webhook service carries them.
    alert_webhook_url: str | None = None
    alert_timeout_s: float = 5.0
    # Reconciliation: the function that runs POST /v1/reconciliations' requests (None: run in-process)
    reconcile_function: str | None = None
    # The customer portal (signed links): the HMAC key (METERBILL_PORTAL_SECRET; on AWS an SSM
    # SecureString named by METERBILL_PORTAL_SECRET_PARAMETER, read once per cold start) and the
    # public base URL links are made with (empty: links are paths, /portal/<token>).
    portal_secret: str | None = None
    portal_secret_parameter: str | None = None
    portal_base_url: str = ""
    # Collections (docs/integrations.md, "Payments, terms and dunning"): the collection method a
    # customer without its own gets, and the dunning ladder (days after the due date).
    collection_method: str = "send_invoice"
    dunning_ladder: tuple[int, ...] = (1, 7, 14)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            events_table=env.get("METERBILL_EVENTS_TABLE", cls.events_table),
            billing_table=env.get("METERBILL_BILLING_TABLE", cls.billing_table),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region,
            dynamodb_endpoint=env.get("METERBILL_DYNAMODB_ENDPOINT") or None,
            invoice_prefix=env.get("METERBILL_INVOICE_PREFIX", cls.invoice_prefix),
            credit_note_prefix=env.get("METERBILL_CREDIT_NOTE_PREFIX", cls.credit_note_prefix),
            grace_hours=_grace(env.get("METERBILL_GRACE_HOURS")),
            usage_wait_s=_seconds(env, "METERBILL_USAGE_WAIT_S", cls.usage_wait_s, 840),
            stream_settle_s=_seconds(env, "METERBILL_STREAM_SETTLE_S", cls.stream_settle_s, 30),
            close_queue_url=env.get("METERBILL_CLOSE_QUEUE_URL") or None,
            close_wait_retry_s=_seconds(env, "METERBILL_CLOSE_WAIT_RETRY_S", cls.close_wait_retry_s, 43200),
            close_wait_attempts=int(_seconds(env, "METERBILL_CLOSE_WAIT_ATTEMPTS", cls.close_wait_attempts, 100)),
            close_max_receives=int(_seconds(env, "METERBILL_CLOSE_MAX_RECEIVES", cls.close_max_receives, 1000)),
            seller_country=(env.get("METERBILL_SELLER_COUNTRY") or "").strip().upper() or None,
            integrations=enabled_integrations(env),
            sync_queue_urls=tuple((name, env.get(sync_queue_env(name), "")) for name in enabled_integrations(env)),
            integration_settings=_settings_source(env.get("METERBILL_INTEGRATION_SETTINGS")),
            brand_name=env.get("METERBILL_BRAND_NAME", "").strip(),
            brand_address=_multiline(env.get("METERBILL_BRAND_ADDRESS")),
            brand_logo=env.get("METERBILL_BRAND_LOGO", "").strip() or None,
            brand_accent=accent_colour(env.get("METERBILL_BRAND_ACCENT") or cls.brand_accent),
            brand_footer=_multiline(env.get("METERBILL_BRAND_FOOTER")),
            bank_details=_multiline(env.get("METERBILL_BANK_DETAILS")),
            support_email=env.get("METERBILL_SUPPORT_EMAIL", "").strip() or None,
            alert_webhook_url=env.get("METERBILL_ALERT_WEBHOOK_URL", "").strip() or None,
            alert_timeout_s=_seconds(env, "METERBILL_ALERT_TIMEOUT_S", cls.alert_timeout_s, 30),
            reconcile_function=env.get("METERBILL_RECONCILE_FUNCTION") or None,
            portal_secret=env.get("METERBILL_PORTAL_SECRET") or None,
            portal_secret_parameter=env.get("METERBILL_PORTAL_SECRET_PARAMETER") or None,
            portal_base_url=env.get("METERBILL_PORTAL_BASE_URL", "").strip().rstrip("/"),
            collection_method=_collection_method(env.get("METERBILL_COLLECTION_METHOD")),
            dunning_ladder=parse_ladder(env.get("METERBILL_DUNNING_LADDER") or "1,7,14", "METERBILL_DUNNING_LADDER"),
        )


def _collection_method(value: str | None) -> str:
    method = (value or "send_invoice").strip()
    if method not in COLLECTION_METHODS:
        raise ValueError(f"METERBILL_COLLECTION_METHOD must be one of {', '.join(COLLECTION_METHODS)}, not {method!r}")
    return method
