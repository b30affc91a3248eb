"""Availability alerts: a buyer asks to be told when an instance type can be ordered (in a region,
under a price per hour), and the check pass tells them.

The check is edge-triggered. Each alert keeps `matched`, whether the previous check saw matching
supply; an alert fires when that goes from False to True, and only then. Supply that stays listed
is told once; a standing alert fires again only after the supply was gone at a check and came
back. The check walks the active alerts in keyset batches (`marketplace.walks`) and finds each
batch's cheapest matching offers in one query, however many alerts and offers there are.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.locks import user_lock
from accounts.models import User
from accounts.services import notify

from .currency import price_text
from .errors import Conflict, ErrorCode, InvalidInput, NotFound
from .models import AvailabilityAlert, InstanceType, Offer, Region
from .money import PRICE_DIGITS, PRICE_PLACES, quantize_price
from .walks import Walk, walk_from

MAX_ACTIVE_ALERTS_PER_USER = 50
NOTIFICATION_KIND = "availability_alert"
# The largest price the column holds: PRICE_DIGITS digits, PRICE_PLACES of them decimals.
MAX_PRICE_PER_HOUR = Decimal(10 ** (PRICE_DIGITS - PRICE_PLACES)) - Decimal(1).scaleb(-PRICE_PLACES)


# --- reads -------------------------------------------------------------------------------------------


def availability_alerts_owned(*, user: User) -> QuerySet[AvailabilityAlert]:
    """The user's own alerts, newest first, with what a row shows in the same query."""
    return AvailabilityAlert.objects.select_related("instance_type", "region").filter(user=user)


def availability_alert_list_for_user(*, user: User) -> QuerySet[AvailabilityAlert]:
    """What the user may see: their own alerts; staff see everyone's."""
    if user.is_staff:
        return AvailabilityAlert.objects.select_related("instance_type", "region")
    return availability_alerts_owned(user=user)


def availability_alert_get_for_user(*, user: User, alert_id: int | str) -> AvailabilityAlert:
    """The alert if the user owns it (or is staff), else 404: others' alerts do not exist for them."""
    try:
        return availability_alert_list_for_user(user=user).get(pk=int(alert_id))
    except (AvailabilityAlert.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such availability alert.") from None


# --- writes ------------------------------------------------------------------------------------------


def _max_price(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    refused = InvalidInput(
        _("A price per hour above 0 and at most %(maximum)s, with at most %(places)s decimals.")
        % {"maximum": price_text(MAX_PRICE_PER_HOUR), "places": PRICE_PLACES},
        fields={"max_price_per_hour": [_("Out of range.")]},
    )
    if not value.is_finite() or value <= 0 or value > MAX_PRICE_PER_HOUR or quantize_price(value) != value:
        raise refused
    return quantize_price(value)


def availability_alert_create(
    *,
    user: User,
    instance_type: InstanceType,
    region: Region | None = None,
    max_price_per_hour: Decimal | None = None,
    standing: bool = False,
) -> AvailabilityAlert:
    """Subscribe `user` to supply of `instance_type` (in `region`, at most `max_price_per_hour` per
    instance, where given). The next check tells them, supply already listed included.

    At most MAX_ACTIVE_ALERTS_PER_USER active alerts per account, and no second active alert with
    the same terms (Conflict, 409). Locks the user row (`accounts.locks.user_lock`), under which the
    limit is decided."""
    if not instance_type.is_active:
        raise InvalidInput(
            _("Instance type %(name)s is not offered.") % {"name": instance_type.name},
            fields={"instance_type": [_("Not offered.")]},
        )
    price = _max_price(max_price_per_hour)
    with transaction.atomic():
        user_lock(user_id=user.pk)
        mine = AvailabilityAlert.objects.active().filter(user=user)
        if mine.count() >= MAX_ACTIVE_ALERTS_PER_USER:
            raise Conflict(
                _("An account has at most %(limit)s active availability alerts; delete one first.")
                % {"limit": MAX_ACTIVE_ALERTS_PER_USER},
                code=ErrorCode.ALERT_LIMIT,
            )
        if mine.filter(
            instance_type=instance_type, region=region, max_price_per_hour=price, standing=standing
        ).exists():
            raise Conflict(
                _("You already have this alert."),
                code=ErrorCode.ALERT_EXISTS,
                fields={"instance_type": [_("Already subscribed.")]},
            )
        return AvailabilityAlert.objects.create(
            user=user, instance_type=instance_type, region=region, max_price_per_hour=price, standing=standing
        )


def availability_alert_delete(*, user: User, alert_id: int) -> None:
    """Remove one of the user's alerts. NotFound (404) if it is not theirs."""
    deleted, _by_model = AvailabilityAlert.objects.filter(user=user, pk=alert_id).delete()
    if not deleted:
        raise NotFound(_("No such availability alert."))


# --- the check ---------------------------------------------------------------------------------------


def _cheapest_match() -> Subquery:
    """The id of the cheapest listed offer on a verified host (what search shows and an order takes
    by default) that the outer alert matches: its instance type, its region if it names one, at most
    its price if it names one. Per alert row, an index lookup of its instance type's offers."""
    offers = (
        Offer.objects.listed()
        .filter(
            verified=True,
            instance_type_id=OuterRef("instance_type_id"),
            region_id=Coalesce(OuterRef("region_id"), "region_id"),
            price_per_hour__lte=Coalesce(OuterRef("max_price_per_hour"), "price_per_hour"),
        )
        .order_by("price_per_hour", "pk")
        .values("pk")[:1]
    )
    return Subquery(offers)


def _tell(alert: AvailabilityAlert, offer: Offer) -> None:
    """Notify the alert's owner of `offer`, the cheapest match. One notice per alert and supply
    episode: an episode is known by the notice before it (`last_notified_at` as the check read it)."""
    name = alert.instance_type.name
    if alert.region:
        title = _("%(type)s is available in %(region)s") % {"type": name, "region": alert.region.code}
    else:
        title = _("%(type)s is available") % {"type": name}
    on_sale = {"type": name, "region": offer.region.code, "price": price_text(offer.price_per_hour)}
    if alert.max_price_per_hour:
        on_sale_text = _("%(type)s is on sale in %(region)s from %(price)s/h (your ceiling: %(ceiling)s/h)") % {
            **on_sale,
            "ceiling": price_text(alert.max_price_per_hour),
        }
    else:
        on_sale_text = _("%(type)s is on sale in %(region)s from %(price)s/h") % on_sale
    then = (
        _("This alert stays on: you will be told again when such supply sells out and returns.")
        if alert.standing
        else _("This alert is now off; create a new one to be told again.")
    )
    previous = alert.last_notified_at
    episode = int(previous.timestamp() * 1_000_000) if previous else 0
    notify(
        user=alert.user,
        kind=NOTIFICATION_KIND,
        title=title,
        body=_("%(on_sale)s: %(offer)s. %(then)s Your alerts: %(alerts)s")
        % {
            "on_sale": on_sale_text,
            "offer": reverse("offer_detail", args=[offer.pk]),
            "then": then,
            "alerts": reverse("availability_alerts"),
        },
        dedupe_key=f"{NOTIFICATION_KIND}:{alert.pk}:{episode}",
        link=reverse("offer_detail", args=[offer.pk]),
    )


@transaction.atomic
def availability_alerts_check(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Check one keyset batch of active alerts (ids above `after`, see `marketplace.walks`) against
    the listed offers, and fire those whose matching supply appeared since the previous check.
    `done` is how many fired.

    A fixed number of queries per batch, whatever its size and the number of offers: the batch's
    ids and states with their cheapest match (one query, a correlated subquery per alert row);
    where some fire, those alerts and their offers (two), one UPDATE each for the alerts that fired
    one-shot, fired standing, and lost their supply, and one notification per alert that fired.
    Edge-triggered on `matched`; the notifications and the flags commit together (their emails
    after commit), and each notification has a dedupe key per supply episode, so a batch run twice
    tells nobody twice. Takes no locks."""
    now = timezone.now()
    rows = list(
        AvailabilityAlert.objects.active()
        .filter(pk__gt=after, user__is_active=True)
        .annotate(cheapest_offer_id=Subquery(_cheapest_match()))
        .order_by("pk")
        .values_list("pk", "matched", "cheapest_offer_id")[:batch_size]
    )
    appeared = {pk: offer_id for pk, matched, offer_id in rows if offer_id is not None and not matched}
    gone = [pk for pk, matched, offer_id in rows if offer_id is None and matched]
    fired: list[AvailabilityAlert] = []
    if appeared:
        offers = Offer.objects.select_related("region").in_bulk(list(appeared.values()))
        candidates = AvailabilityAlert.objects.select_related("user", "instance_type", "region").filter(
            pk__in=list(appeared), active=True, matched=False
        )
        # An offer deleted since the first query leaves its alert unmatched: the next check decides.
        fired = [alert for alert in candidates.order_by("pk") if appeared[alert.pk] in offers]
        for alert in fired:
            _tell(alert, offers[appeared[alert.pk]])
    standing = [alert.pk for alert in fired if alert.standing]
    one_shot = [alert.pk for alert in fired if not alert.standing]
    if standing:
        AvailabilityAlert.objects.filter(pk__in=standing).update(matched=True, last_notified_at=now)
    if one_shot:
        AvailabilityAlert.objects.filter(pk__in=one_shot).update(matched=True, active=False, last_notified_at=now)
    if gone:
        AvailabilityAlert.objects.filter(pk__in=gone).update(matched=False)
    return walk_from([pk for pk, _, _ in rows], batch_size=batch_size, done=len(fired))
