"""Pushing the change feed: signed webhook batches, delivered at least once, in order per source."""

from syncd.feed.signing import sign, verify
from syncd.feed.webhooks import WebhookDispatcher, WebhookSender, full_jitter, webhook_backlog

__all__ = [
    "WebhookDispatcher",
    "WebhookSender",
    "full_jitter",
    "sign",
    "verify",
    "webhook_backlog",
]
