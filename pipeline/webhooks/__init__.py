"""Signed webhooks of the pipeline's runs (Standard Webhooks).

With `PIPELINE_WEBHOOK_URL` and `PIPELINE_WEBHOOK_SECRET` set, a run that ends sends one of
`run.completed`, `run.failed`, `run.cancelled`, `run.budget_exceeded`:

- `events`: the payload, and `emit_run_ended`, called where a run's status becomes final,
  which enqueues one job per (run, event) on the `webhooks` queue;
- `delivery`: that queue's handler (run by `python -m pipeline.workers`): a signed POST per
  try, retried with exponential backoff, every try recorded in `webhook_delivery`;
- `signing`: the signature (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`);
- `log`: the delivery log as read by `python -m pipeline webhooks`.
"""

from __future__ import annotations

from pipeline.webhooks.signing import WebhookConfigError, secret_key, sign, signature_headers

__all__ = ["WebhookConfigError", "secret_key", "sign", "signature_headers"]
