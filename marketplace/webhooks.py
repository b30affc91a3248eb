"""Outgoing webhooks: an account's HTTPS endpoints receive its events, signed, retried with backoff,
each try recorded, replayable; an endpoint that keeps failing is disabled and its owner told.

Signing (as Stripe does it): the header `Marketplace-Signature: t=<unix seconds>,v1=<hex>` where
`v1` is HMAC-SHA256 of `"<t>.<raw body>"` with the endpoint's secret. Receivers recompute it and
refuse a timestamp more than a few minutes old (`signature_verify` is the reference):

    import hmac, hashlib, time
    def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(","))
        signed = f"{parts['t']}.".encode() + body
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) <= tolerance
        return fresh and hmac.compare_digest(expected.encode(), parts["v1"].encode())

Events are recorded in the transaction that caused them (`event_emit`): a rolled-back change sends
nothing. A worker claims a due delivery with one conditional UPDATE (no lock held over the network),
posts it, and records the answer; the sweeper (`deliveries_due`) picks up retries and deliveries whose
worker died. Deliveries never go to private, loopback or link-local addresses unless
`WEBHOOK_ALLOW_PRIVATE_ADDRESSES` (development and tests only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import requests
from celery import current_app  # type: ignore[import-untyped]
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify

from .errors import InvalidInput, NotFound
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .secrets import secret_decrypt, secret_encrypt
from .webhook_destinations import destination_check, post_pinned

INSTANCE_STATUS_CHANGED = "instance.status_changed"
PAYOUT_PAID = "payout.paid"
PAYOUT_FAILED = "payout.failed"
# Every in-app notification is also an event, `notification.<kind>` (preemption notices, low
# balance, problem report updates, price changes, ...).
NOTIFICATION_KINDS = (
    "availability_alert",
    "balance_exhausted",
    "balance_low",
    "credit_note",
    "disk_release_soon",
    "disk_released",
    "instance_failed",
    "instance_host_lost",
    "maintenance",
    "moderation",
    "payment_reversed",
    "price_change",
    "problem_report",
    "sla_credit",
    "spot_preempted",
    "spot_resumed",
    "webhook_disabled",
)
EVENT_TYPES = (
    INSTANCE_STATUS_CHANGED,
    PAYOUT_PAID,
    PAYOUT_FAILED,
    *(f"notification.{kind}" for kind in NOTIFICATION_KINDS),
)
ALL_EVENTS = "*"
MAX_ENDPOINTS_PER_USER = 20
# Seconds to wait after the n-th failed try (then the delivery fails): about 5 hours in all.
RETRY_DELAYS = (30, 120, 600, 1800, 3600, 10800)
STALE_CLAIM = timedelta(minutes=5)  # a delivery claimed this long ago by a worker that died is due again
LOST_MESSAGE = timedelta(minutes=2)  # queued this long ago and still waiting: its message was lost
RETENTION = timedelta(days=30)  # finished deliveries are kept this long
SIGNATURE_HEADER = "Marketplace-Signature"
DELIVER_TASK = "marketplace.tasks.webhook_deliver_task"

logger = logging.getLogger(__name__)


# --- endpoints ----------------------------------------------------------------------------------


def endpoint_create(
    *, user: User, url: str, events: Iterable[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown once)."""
    url = (url or "").strip()
    destination_check(url, field="url")
    wanted = events_check(events)
    if WebhookEndpoint.objects.filter(user=user).count() >= MAX_ENDPOINTS_PER_USER:
        raise InvalidInput(
            _("At most %(limit)s webhook endpoints per account.") % {"limit": MAX_ENDPOINTS_PER_USER},
            fields={"url": [_("Limit reached.")]},
        )
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    endpoint = WebhookEndpoint.objects.create(
        user=user,
        url=url,
        events=wanted,
        description=(description or "")[:200],
        secret_encrypted=secret_encrypt(secret),
    )
    return endpoint, secret


def endpoint_update(
    *, endpoint: WebhookEndpoint, events: Iterable[str] | None = None, active: bool | None = None
) -> WebhookEndpoint:
    """Change what it receives, or turn it on or off (on again: its failure count starts over)."""
    if events is not None:
        endpoint.events = events_check(events)
    fields = ["events"]
    if active is not None and active != endpoint.active:
        endpoint.active = active
        fields.append("active")
        if active:  # on again: its failure count starts over (else it is left to concurrent deliveries)
            endpoint.consecutive_failures, endpoint.disabled_at, endpoint.disabled_reason = 0, None, ""
            fields += ["consecutive_failures", "disabled_at", "disabled_reason"]
    endpoint.save(update_fields=fields)
    return endpoint


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (shown once); deliveries from now on are signed with it."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    endpoint.secret_encrypted = secret_encrypt(secret)
    endpoint.save(update_fields=["secret_encrypted"])
    return secret


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """The endpoint with its deliveries and their tries, in bulk (nothing points at them from elsewhere)."""
    WebhookAttempt.objects.filter(delivery__endpoint=endpoint).delete()
    WebhookDelivery.objects.filter(endpoint=endpoint).delete()
    endpoint.delete()


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return secret_decrypt(endpoint.secret_encrypted)


def events_check(events: Iterable[str]) -> list[str]:
    wanted = sorted({str(event) for event in events})
    if not wanted:
        raise InvalidInput(_('Choose at least one event, or "*" for all.'), fields={"events": [_("Required.")]})
    unknown = [event for event in wanted if event != ALL_EVENTS and event not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            _("Unknown event: %(events)s.") % {"events": ", ".join(unknown)},
            fields={"events": [_("Choose from: %(events)s, or *.") % {"events": ", ".join(EVENT_TYPES)}]},
        )
    return [ALL_EVENTS] if ALL_EVENTS in wanted else wanted


# --- events -------------------------------------------------------------------------------------


def event_emit(*, user_id: int, event_type: str, data: dict[str, Any]) -> int:
    """Record the event for each of the user's active endpoints that wants it, in the current
    transaction; each is posted once it commits. Returns the deliveries made (one query when the
    user has no endpoint)."""
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(user_id=user_id, active=True)
        if ALL_EVENTS in e.events or event_type in e.events
    ]
    if not endpoints:
        return 0
    event_id = uuid.uuid4()
    now = timezone.now()
    payload = {"id": str(event_id), "type": event_type, "created": now.isoformat(), "data": data}
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=e, event_id=event_id, event_type=event_type, payload=payload, next_attempt_at=now)
        for e in endpoints
    )
    _post_on_commit([d.pk for d in deliveries])
    return len(deliveries)


def _post_on_commit(delivery_ids: list[int]) -> None:
    """Hand the deliveries to a worker once the transaction commits. By task name: the tasks are an
    entry point above this module. A broker that is down loses nothing: the sweeper finds them."""

    def enqueue() -> None:
        try:
            for delivery_id in delivery_ids:
                current_app.send_task(DELIVER_TASK, args=(delivery_id,))
        except Exception:
            logger.warning("webhook deliveries %s left to the sweeper: the broker refused them", delivery_ids)

    transaction.on_commit(enqueue)


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event again (same event id, so receivers can dedupe), as a new delivery."""
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)  # as it is now, not as loaded
    if not endpoint.active:
        raise InvalidInput(_("The endpoint is disabled: turn it on first."), fields={"endpoint": [_("Disabled.")]})
    replay = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        replay_of=delivery,
    )
    _post_on_commit([replay.pk])
    return replay


# --- delivery -----------------------------------------------------------------------------------


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def signature_verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (the module docstring has it standalone)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature_header(secret, body, timestamp).split("v1=", 1)[1]
    fresh = abs((now if now is not None else time.time()) - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())


def delivery_attempt(*, delivery_id: int) -> str | None:
    """Claim the delivery if it is due, post it once, record the answer. Returns its new status,
    or None when it was not due (delivered, claimed by another worker, or not yet time)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(status=WebhookDelivery.Status.SENDING, claimed_at=now)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.active:
        return _finish(delivery, WebhookDelivery.Status.FAILED)
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    started = time.monotonic()
    status_code, error = None, ""
    try:
        destination = destination_check(endpoint.url)
        status_code = post_pinned(
            destination,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "marketplace-webhooks/1",
                "Marketplace-Event": delivery.event_type,
                "Marketplace-Delivery": str(delivery.pk),
                SIGNATURE_HEADER: signature_header(endpoint_secret(endpoint), body, int(time.time())),
            },
        )
    except InvalidInput as refused:
        error = refused.detail
    except requests.RequestException as failure:
        error = f"{failure.__class__.__name__}: {str(failure)[:200]}"
    except Exception as failure:
        error = f"{failure.__class__.__name__}: {str(failure)[:200]}"
    duration = int((time.monotonic() - started) * 1000)
    return _record(delivery, status_code=status_code, error=error, duration_ms=duration)


@transaction.atomic
def _record(delivery: WebhookDelivery, *, status_code: int | None, error: str, duration_ms: int) -> str:
    WebhookAttempt.objects.create(
        delivery=delivery, status_code=status_code, error=error[:300], duration_ms=duration_ms
    )
    delivery.attempts += 1
    endpoint = delivery.endpoint
    if status_code is not None and 200 <= status_code < 300:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=0)
        return _finish(delivery, WebhookDelivery.Status.SUCCEEDED)
    # Counted in the database (concurrent deliveries to one endpoint must not lose a failure).
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    failures = WebhookEndpoint.objects.values_list("consecutive_failures", flat=True).get(pk=endpoint.pk)
    if failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
        _disable(endpoint, f"{failures} failed deliveries in a row; the last: {error or f'HTTP {status_code}'}")
        return _finish(delivery, WebhookDelivery.Status.FAILED)
    if delivery.attempts > len(RETRY_DELAYS):
        return _finish(delivery, WebhookDelivery.Status.FAILED)
    delivery.status, delivery.queued_at = WebhookDelivery.Status.PENDING, None
    delivery.next_attempt_at = timezone.now() + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
    delivery.save(update_fields=["attempts", "status", "next_attempt_at", "queued_at"])
    return delivery.status


def _finish(delivery: WebhookDelivery, status: str) -> str:
    delivery.status, delivery.finished_at = status, timezone.now()
    delivery.save(update_fields=["attempts", "status", "finished_at"])
    return status


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Turn the endpoint off and tell its owner, once (a concurrent failure finds it off already)."""
    turned_off = WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(
        active=False, disabled_at=timezone.now(), disabled_reason=reason[:300]
    )
    endpoint.active = False
    if not turned_off:
        return
    # Its other waiting deliveries will not be sent.
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, finished_at=timezone.now()
    )
    notify(
        user=endpoint.user,
        kind="webhook_disabled",
        title=_("Webhook endpoint %(url)s was disabled") % {"url": endpoint.url},
        body=_("%(reason)s. Fix the endpoint, turn it on again and replay the deliveries you need.")
        % {"reason": reason},
        link=reverse("webhook_endpoint", args=[endpoint.pk]),
    )


def deliveries_due(*, limit: int = 500) -> list[int]:
    """Deliveries to hand to workers now (marked queued): retries that are due and not queued yet,
    queued ones whose message looks lost (still waiting minutes later), and claims whose worker died,
    each counted as a failed try (a delivery that kills its worker runs out of tries instead of
    looping). A backlog is not queued again every sweep."""
    now = timezone.now()
    stale = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.SENDING, claimed_at__lt=now - STALE_CLAIM)
    stale_rows = list(stale.values_list("pk", "endpoint_id")[:limit])
    if stale_rows:
        _count_lost_tries(stale_rows, now)
    not_queued = Q(queued_at__isnull=True) | Q(queued_at__lt=now - LOST_MESSAGE)
    due = list(
        WebhookDelivery.objects.filter(not_queued, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    WebhookDelivery.objects.filter(pk__in=due).update(queued_at=now)
    return due


@transaction.atomic
def _count_lost_tries(rows: list[tuple[int, int]], now: Any) -> None:
    """Tries whose worker died: each is a failed try, listed and counted like any other."""
    ids = [pk for pk, _endpoint_id in rows]
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(delivery_id=pk, error="The worker stopped during the try.") for pk in ids
    )
    claimed = WebhookDelivery.objects.filter(pk__in=ids, status=WebhookDelivery.Status.SENDING)
    claimed.filter(attempts__gte=len(RETRY_DELAYS)).update(
        status=WebhookDelivery.Status.FAILED, attempts=F("attempts") + 1, finished_at=now
    )
    claimed.update(
        status=WebhookDelivery.Status.PENDING, attempts=F("attempts") + 1, next_attempt_at=now, queued_at=None
    )
    for endpoint_id, lost in Counter(endpoint_id for _pk, endpoint_id in rows).items():
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(consecutive_failures=F("consecutive_failures") + lost)
    failing = WebhookEndpoint.objects.filter(
        pk__in={endpoint_id for _pk, endpoint_id in rows},
        active=True,
        consecutive_failures__gte=settings.WEBHOOK_DISABLE_AFTER_FAILURES,
    ).select_related("user")
    for endpoint in failing:
        _disable(endpoint, f"{endpoint.consecutive_failures} failed deliveries in a row; the last: its worker stopped")


def deliveries_prune(*, older_than: timedelta = RETENTION, batch_size: int = 5000) -> int:
    """Finished deliveries older than the retention, a batch at a time (their tries go with them)."""
    cutoff = timezone.now() - older_than
    ids = list(
        WebhookDelivery.objects.filter(
            status__in=(WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED), created_at__lt=cutoff
        ).values_list("pk", flat=True)[:batch_size]
    )
    WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
    WebhookDelivery.objects.filter(pk__in=ids).delete()
    return len(ids)


def endpoint_for_user(*, user: User, endpoint_id: int | str) -> WebhookEndpoint:
    """The user's own endpoint, else 404: others' endpoints do not exist for them."""
    try:
        return WebhookEndpoint.objects.get(pk=int(endpoint_id), user=user)
    except (WebhookEndpoint.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound(_("No such webhook endpoint.")) from None


def notification_emitted(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """post_save of accounts.Notification: every new notification is also the event
    `notification.<kind>` (connected in marketplace.apps)."""
    if created:
        event_emit(
            user_id=instance.user_id,
            event_type=f"notification.{instance.kind}",
            data={
                "notification": instance.pk,
                "kind": instance.kind,
                "title": instance.title,
                "body": instance.body,
                "url": f"{settings.SITE_URL}{instance.link}" if instance.link else None,
            },
        )
