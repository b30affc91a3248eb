"""SLA credits: a rented instance that lost its host beyond the grace period earns its buyer a
credit charged to the supplier, with the heartbeat gap as evidence. No ticket needed.

The credit is charged to the supplier's payable even when that takes it below zero: a negative
payable is what the supplier owes ("owed by supplier" on its earnings page), repaid from its later
earnings before any payout (`billing.payouts`), never a separate balance.

A host lost for good (`orders.agent.hosts_release_lost`) also ends its reserved terms: the rest of
the term is refunded whole (`sla_reserved_term_refund`), as the supplier, not the buyer, ended it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import notify
from billing import rating
from billing.ledger import Kind, buyer_wallet, platform_account, post_transaction, supplier_payable
from billing.models import LedgerTransaction
from marketplace.currency import money_text
from suppliers.models import HostOutage

from .models import Instance, InstanceStatus, Pricing


def sla_credits_for_outage(*, outage: HostOutage) -> list[LedgerTransaction]:
    """A rented instance lost its host beyond the grace period: its buyer is credited a multiple
    (SLA_CREDIT_MULTIPLE, default 5x) of the price of the lost time, charged to the supplier's
    payable, with the heartbeat gap as evidence. No ticket needed.

    Called when the host comes back (the gap up to its return) or when it is declared lost (the gap
    up to then, the outage still open). Once per outage and instance whichever comes first: the
    ledger key `sla:<outage>:<instance>` is written once, and the notice has the same dedupe key."""
    grace = timedelta(seconds=int(settings.SLA_GRACE_SECONDS))
    gap = (outage.ended_at or timezone.now()) - outage.started_at
    lost_seconds = int((gap - grace).total_seconds())
    if lost_seconds <= 0:
        return []
    multiple = Decimal(settings.SLA_CREDIT_MULTIPLE)
    affected = Instance.objects.filter(
        host=outage.host,
        status__in=[InstanceStatus.RUNNING, InstanceStatus.PROVISIONING],
        created_at__lt=outage.started_at,
    ).select_related("buyer")
    credits = []
    for instance in affected:
        amount = rating.charge_for(lost_seconds, instance.price_per_hour) * multiple
        if amount <= 0:
            continue
        credits.append(
            post_transaction(
                kind=LedgerTransaction.Kind.CREDIT,
                key=f"sla:{outage.pk}:{instance.pk}",
                description=f"SLA credit: host lost for {lost_seconds // 60} min (i-{instance.pk})",
                postings=[
                    (supplier_payable(outage.host.organization), -amount),
                    (buyer_wallet(instance.buyer), amount),
                ],
                reference={
                    "outage": outage.pk,
                    "instance": instance.pk,
                    "last_heartbeat": outage.started_at.isoformat(),
                    "recovered_at": outage.ended_at.isoformat() if outage.ended_at else None,
                    "gap_seconds": int(gap.total_seconds()),
                    "multiple": str(multiple),
                },
            )
        )
        notify(
            user=instance.buyer,
            kind="sla_credit",
            title=_("SLA credit: %(amount)s") % {"amount": money_text(amount)},
            body=_("Instance i-%(id)s lost its host for %(minutes)s minutes.")
            % {"id": instance.pk, "minutes": int(gap.total_seconds()) // 60},
            dedupe_key=f"sla:{outage.pk}:{instance.pk}",
            link=reverse("orders:instance_detail", args=[instance.pk]),
        )
    return credits


def sla_reserved_term_refund(*, instance: Instance, at: datetime) -> LedgerTransaction | None:
    """A reserved instance whose host was lost: the term from `at` (when the loss was declared; it
    was recognized up to there) to its end goes back to the buyer's wallet from the reserved
    prepayments, whole: no cancellation fee, as the supplier's host ended it. Keyed like a
    cancellation refund (`reserved-cancel:<instance>`), so the term is refunded once either way."""
    if instance.pricing != Pricing.RESERVED or instance.reserved_until is None or instance.reserved_until <= at:
        return None
    unused = rating.charge_for(int((instance.reserved_until - at).total_seconds()), instance.price_per_hour)
    if unused <= 0:
        return None
    return post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=f"reserved-cancel:{instance.pk}",
        description=f"Reserved i-{instance.pk} ended by its lost host: the rest of the term refunded",
        postings=[(platform_account(Kind.RESERVED_PREPAYMENTS), -unused), (buyer_wallet(instance.buyer), unused)],
        reference={"instance": instance.pk, "unused": str(unused), "fee": "0", "host_lost_at": at.isoformat()},
    )
