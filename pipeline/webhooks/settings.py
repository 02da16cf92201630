"""Validation of the webhook settings, raising `WebhookConfigError` (the value never shown)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from pipeline.webhooks.signing import WebhookConfigError, secret_key

__all__ = ["check_secret", "check_signed", "check_url", "public_url"]


def public_url(url: str) -> str:
    """The URL as logs and the delivery log show it: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(value: object) -> object:
    """`PIPELINE_WEBHOOK_URL`: empty is None (off); otherwise an http(s) URL with a host."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookConfigError("PIPELINE_WEBHOOK_URL must be a string")
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        ok = False
    if not ok:
        # the value may hold credentials: only its scheme is named
        scheme = value.split(":", 1)[0][:10] if ":" in value else "none"
        raise WebhookConfigError(
            f"PIPELINE_WEBHOOK_URL must be an http:// or https:// URL with a host "
            f"(scheme {scheme!r}; value not shown)"
        )
    return value


def check_secret(value: object) -> object:
    """`PIPELINE_WEBHOOK_SECRET`: empty is None; otherwise `whsec_` and base64 (24+ bytes)."""
    if value is None or value == "":
        return None
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str):
        raise WebhookConfigError("PIPELINE_WEBHOOK_SECRET must be a string (value not shown)")
    secret_key(raw.strip())
    return raw.strip()


def check_signed(url: str | None, secret: SecretStr | None) -> None:
    """Every event is signed: a URL without a secret is refused."""
    if url is not None and secret is None:
        raise WebhookConfigError(
            "PIPELINE_WEBHOOK_URL is set but PIPELINE_WEBHOOK_SECRET is not: every webhook is "
            "signed (set a whsec_ secret)"
        )
