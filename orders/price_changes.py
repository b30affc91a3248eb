"""Price changes: new host prices apply to new rentals; a running on-demand rental keeps its price
until its renter accepts the new one (metered at the old rate up to then)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify
from marketplace.currency import money_text
from marketplace.errors import Conflict, ErrorCode, InvalidInput
from suppliers.models import Host
from suppliers.offers import host_type_figures

from .errors import OrderErrorCode
from .locks import instance_and_host_lock
from .metering import meter_rate_change
from .models import Instance, InstanceEvent, Pricing
from .state import Actor


def current_price_for(instance: Instance) -> Decimal:
    """What this instance would cost if ordered on its host now (on-demand)."""
    return host_type_figures(instance.host, instance.instance_type).price_per_hour


@transaction.atomic
def instance_accept_current_price(*, instance: Instance, buyer: User) -> Instance:
    """A renter moves a running rental to the host's current price (from now on); until then
    running rentals keep the price they were ordered at."""
    instance, _host = instance_and_host_lock(instance_id=instance.pk)
    if instance.buyer_id != buyer.pk:
        raise InvalidInput(_("Not your instance."), code=ErrorCode.NOT_FOUND)
    if instance.pricing != Pricing.ON_DEMAND:
        raise Conflict(_("Spot bids and reserved terms keep their agreed price."), code=OrderErrorCode.PRICE_FIXED)
    new_price = current_price_for(instance)
    if new_price == instance.price_per_hour:
        raise Conflict(_("Your rental already has the current price."), code=OrderErrorCode.PRICE_UNCHANGED)
    meter_rate_change(instance=instance, at=timezone.now())
    InstanceEvent.objects.create(
        instance=instance,
        kind=InstanceEvent.Kind.TRANSITION,
        from_status=instance.status,
        to_status=instance.status,
        reason=f"Price changed from ${instance.price_per_hour}/h to ${new_price}/h (accepted by the renter)",
        actor=Actor.BUYER,
        actor_user=buyer,
    )
    instance.price_per_hour = new_price
    instance.save(update_fields=["price_per_hour", "updated_at"])
    return instance


def renters_notify_price_change(*, host: Host) -> int:
    """Tell renters of on-demand instances on `host` about a new price they may accept."""
    told = 0
    for instance in (
        Instance.objects.not_terminated()
        .filter(host=host, pricing=Pricing.ON_DEMAND)
        .select_related("buyer", "instance_type", "host")
    ):
        new_price = current_price_for(instance)
        if new_price != instance.price_per_hour:
            notify(
                user=instance.buyer,
                kind="price_change",
                title=_("New price for %(type)s on host %(host)s: %(price)s/h")
                % {"type": instance.instance_type_id, "host": host.pk, "price": money_text(new_price, 4)},
                body=_("i-%(id)s keeps %(price)s/h until you accept the new price.")
                % {"id": instance.pk, "price": money_text(instance.price_per_hour, 4)},
                link=reverse("orders:instance_detail", args=[instance.pk]),
            )
            told += 1
    return told
