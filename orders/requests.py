"""Order and quote requests: what a buyer asks for (API or form), validated and resolved to rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.broker import Location, Requirements
from marketplace.errors import Conflict, InvalidInput
from marketplace.models import InstanceType, Offer, Region
from marketplace.money import quantize_price
from suppliers.offers import TermsRefusal, host_rental_terms, rental_terms_refusal

from .errors import OfferSoldOut, OrderErrorCode
from .launch import Launch, launch_resolve
from .models import RESERVED_TERMS_HOURS, Pricing

MAX_COUNT = 64


@dataclass
class OrderRequest:
    """An order or quote request as received (API or form)."""

    count: int = 1
    pricing: str = Pricing.ON_DEMAND
    instance_type: str | None = None
    offer: int | Literal[""] | None = None  # "" (an empty form value) counts as not given
    requirements: dict[str, Any] | Literal[""] | None = None
    max_price_per_hour: Decimal | None = None
    term_hours: int | None = None
    region: str | None = None
    near: tuple[Decimal, Decimal] | None = None
    same_host: bool = False
    image: str = ""
    command: str = ""
    terminate_after_hours: int | None = None
    allow_unverified: bool = False
    ssh_keys: list[int] | None = None  # the buyer's SSH key ids to install; None: all of them
    template: str | None = None  # a launch template by name: its image, command, ports, environment, disk
    ports: list[int] | None = None  # container ports to reach from outside (None: the template's)
    environment: list[dict[str, Any]] | None = None  # [{name, value, secret}]
    disk_gb: int | None = None  # None: the template's, else the instance type's default
    errors: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderTarget:
    """What an order asks for, validated: exactly one of instance_type / offer / requirements."""

    pricing: str
    count: int
    instance_type: InstanceType | None = None
    offer_host_id: int | None = None
    requirements: Requirements | None = None
    max_price_per_hour: Decimal | None = None
    term_hours: int | None = None
    region_id: int | None = None
    near: Location | None = None
    same_host: bool = False
    rental_hours: int | None = None  # how long the rental may last: term, or terminate_after_hours
    allow_unverified: bool = False  # the buyer accepts hosts whose declaration is not verified
    launch: Launch = field(default_factory=Launch)

    @property
    def ports(self) -> tuple[int, ...]:
        return self.launch.ports

    def disk_gb_for(self, instance_type: InstanceType) -> int:
        """Each instance's disk: the chosen size, never below the type's default."""
        return max(instance_type.disk_gb, self.launch.disk_gb or 0)

    @property
    def spot_bid(self) -> Decimal | None:
        return self.max_price_per_hour if self.pricing == Pricing.SPOT else None

    @property
    def minimum_applies(self) -> bool:
        return minimum_rental_applies(self.pricing)


def minimum_rental_applies(pricing: str) -> bool:
    """Whether the host's minimum rental binds an order of this pricing. Spot is preemptible: the
    platform may end it at any moment, so a minimum would bind only the buyer; on-demand and
    reserved rentals are the buyer's to end, so the minimum holds (see `orders.lifecycle`)."""
    return pricing != Pricing.SPOT


def order_target_resolve(request: OrderRequest, *, for_quote: bool = False, buyer: User | None = None) -> OrderTarget:
    """Validate the request and resolve names to rows. Raises InvalidInput naming every bad field;
    then OfferSoldOut (409) when the pinned offer exists but is sold out or past its end."""
    errors: dict[str, list[str]] = {}
    sold_out: Offer | None = None
    pinned: Offer | None = None
    targets = [name for name in ("instance_type", "offer", "requirements") if getattr(request, name) not in (None, "")]
    if len(targets) != 1:
        errors["instance_type"] = [_("Give exactly one of instance_type, offer or requirements.")]
    if not 1 <= int(request.count or 0) <= MAX_COUNT:
        errors["count"] = [_("Between 1 and %(maximum)s.") % {"maximum": MAX_COUNT}]
    if request.pricing not in Pricing.values:
        errors["pricing"] = [_("One of %(choices)s.") % {"choices": ", ".join(Pricing.values)}]
    if request.pricing == Pricing.SPOT and request.max_price_per_hour is None:
        errors["max_price_per_hour"] = [_("Spot orders need a bid: the most you pay per instance-hour.")]
    if request.max_price_per_hour is not None and request.max_price_per_hour <= 0:
        errors["max_price_per_hour"] = [_("Must be positive.")]
    if request.pricing == Pricing.RESERVED and request.term_hours not in RESERVED_TERMS_HOURS:
        errors["term_hours"] = [
            _("Reserved terms are %(terms)s hours.") % {"terms": ", ".join(str(h) for h in RESERVED_TERMS_HOURS)}
        ]
    if request.pricing != Pricing.RESERVED and request.term_hours is not None:
        errors["term_hours"] = [_("Only reserved orders have a term.")]
    if request.terminate_after_hours is not None and not 1 <= request.terminate_after_hours <= 24 * 366:
        errors["terminate_after_hours"] = [_("Between 1 and 8784 hours.")]
    launch = launch_resolve(
        {
            "template": request.template,
            "image": request.image,
            "command": request.command,
            "ports": request.ports,
            "environment": request.environment,
            "disk_gb": request.disk_gb,
        },
        buyer=buyer,
        errors=errors,
        for_quote=for_quote,
    )

    instance_type = offer_host_id = requirements = region_id = near = None
    if request.instance_type not in (None, ""):
        instance_type = (
            InstanceType.objects.active().select_related("accelerator_model").filter(name=request.instance_type).first()
        )
        if instance_type is None:
            errors["instance_type"] = [_("Unknown instance type %(name)s.") % {"name": repr(request.instance_type)}]
    if request.offer not in (None, ""):
        pinned = (
            Offer.objects.listed()
            .select_related("instance_type__accelerator_model", "host")
            .filter(pk=request.offer)
            .first()
        )
        if pinned is not None:
            instance_type, offer_host_id = pinned.instance_type, pinned.host_id
        else:
            sold_out = Offer.objects.select_related("instance_type").filter(pk=request.offer).first()
            if sold_out is None:
                errors["offer"] = [_("No such offer.")]
    if request.requirements not in (None, ""):
        requirements = _parse_requirements(request.requirements, errors)
    if instance_type is not None and launch.disk_gb is not None and launch.disk_gb < instance_type.disk_gb:
        errors["disk_gb"] = [
            _("At least %(instance_type)s's %(disk_gb)s GB.")
            % {"instance_type": instance_type.name, "disk_gb": instance_type.disk_gb}
        ]
    if request.region:
        region = Region.objects.filter(code=request.region).first()
        if region is None:
            errors["region"] = [_("Unknown region %(code)s.") % {"code": repr(request.region)}]
        else:
            region_id = region.pk
    if request.near is not None:
        lat, lon = request.near
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            errors["near"] = [_("Latitude within [-90, 90] and longitude within [-180, 180].")]
        else:
            near = Location(float(lat), float(lon))
    if errors:
        raise InvalidInput(_("The order is not valid."), fields=errors)
    if sold_out is not None:
        raise OfferSoldOut(
            _(
                "Offer %(offer)s (%(instance_type)s) is sold out or no longer listed; "
                "order the instance type to get the cheapest other host."
            )
            % {"offer": sold_out.pk, "instance_type": sold_out.instance_type.name},
            fields={"offer": [_("Sold out or no longer listed.")]},
            extra={"offer": sold_out.pk, "instance_type": sold_out.instance_type.name},
        )
    rental_hours = request.term_hours if request.pricing == Pricing.RESERVED else request.terminate_after_hours
    if pinned is not None:
        _pinned_terms_check(pinned, request, rental_hours)
    return OrderTarget(
        pricing=request.pricing,
        count=int(request.count),
        instance_type=instance_type,
        offer_host_id=offer_host_id,
        requirements=requirements if requirements is not None else None,
        max_price_per_hour=quantize_price(request.max_price_per_hour) if request.max_price_per_hour else None,
        term_hours=request.term_hours,
        region_id=region_id,
        near=near,
        same_host=bool(request.same_host),
        rental_hours=rental_hours,
        allow_unverified=bool(request.allow_unverified),
        launch=launch,
    )


def _pinned_terms_check(offer: Offer, request: OrderRequest, rental_hours: int | None) -> None:
    """A pinned offer is listed but may not be had on the order's terms: say which, and how to fix
    the order (409 with a code of its own)."""
    terms = host_rental_terms(offer.host)
    now = timezone.now()
    refusal = rental_terms_refusal(
        terms,
        rental_hours=rental_hours,
        minimum_applies=minimum_rental_applies(request.pricing),
        allow_unverified=bool(request.allow_unverified),
        now=now,
    )
    what = {"offer": offer.pk, "instance_type": offer.instance_type.name}
    length_field = "term_hours" if request.pricing == Pricing.RESERVED else "terminate_after_hours"
    if refusal == TermsRefusal.UNVERIFIED:
        raise Conflict(
            _(
                "Offer %(offer)s (%(instance_type)s) is on a host whose declaration is not verified yet. Send "
                "allow_unverified: true to rent it anyway, or order the instance type to get a verified host."
            )
            % what,
            code=OrderErrorCode.UNVERIFIED_HOST,
            fields={"allow_unverified": [_("The host is not verified yet: accept it explicitly to rent it.")]},
            extra={"offer": offer.pk},
        )
    if refusal == TermsRefusal.MINIMUM_RENTAL:
        raise Conflict(
            _(
                "Offer %(offer)s (%(instance_type)s) is rented for at least %(minimum)s h; this order asks for "
                "%(hours)s h. Ask for %(minimum)s h or more, or leave terminate_after_hours out (billed at least "
                "the minimum), or order the instance type to get another host."
            )
            % {**what, "minimum": terms.min_rental_hours, "hours": rental_hours},
            code=OrderErrorCode.RENTAL_BELOW_MINIMUM,
            fields={
                length_field: [_("The host's minimum rental is %(minimum)s h.") % {"minimum": terms.min_rental_hours}]
            },
            extra={"offer": offer.pk, "min_rental_hours": terms.min_rental_hours},
        )
    if refusal == TermsRefusal.MAINTENANCE:
        until = cast(datetime, terms.available_until)  # the refusal is about it
        longest = max(0, int((until - now).total_seconds() // 3600))
        raise Conflict(
            _(
                "Offer %(offer)s (%(instance_type)s) is available until %(until)s UTC (planned maintenance): an "
                "order on it must end by then. Set terminate_after_hours to at most %(longest)s, or order the "
                "instance type to get another host."
            )
            % {**what, "until": f"{until:%Y-%m-%d %H:%M}", "longest": longest},
            code=OrderErrorCode.RENTAL_PAST_AVAILABILITY,
            fields={
                length_field: [
                    _("Must end by %(until)s UTC (at most %(longest)s h from now).")
                    % {"until": f"{until:%Y-%m-%d %H:%M}", "longest": longest}
                ]
            },
            extra={"offer": offer.pk, "available_until": until.isoformat(), "max_terminate_after_hours": longest},
        )


def _parse_requirements(raw: object, errors: dict[str, list[str]]) -> Requirements | None:
    if not isinstance(raw, dict):
        errors["requirements"] = [_("An object with min_memory_gb, min_tflops and accelerator_kinds.")]
        return None
    unknown = set(raw) - {"min_memory_gb", "min_tflops", "accelerator_kinds"}
    if unknown:
        errors["requirements"] = [_("Unknown key(s): %(keys)s.") % {"keys": ", ".join(sorted(unknown))}]
        return None
    try:
        memory = int(raw.get("min_memory_gb", 0))
        tflops = Decimal(str(raw.get("min_tflops", 0)))
        kinds = raw.get("accelerator_kinds", ["gpu", "dsa", "cpu"])
        if isinstance(kinds, str):
            kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        kinds = frozenset(kinds)
    except (TypeError, ValueError, ArithmeticError):
        errors["requirements"] = [_("min_memory_gb is a whole number, min_tflops a number.")]
        return None
    if memory < 0 or tflops < 0 or not tflops.is_finite():
        errors["requirements"] = [_("Minimums cannot be negative.")]
        return None
    if not kinds or not kinds <= {"gpu", "dsa", "cpu"}:
        errors["requirements"] = [_("accelerator_kinds is a non-empty list of gpu, dsa, cpu.")]
        return None
    return Requirements(min_memory_gb=memory, min_tflops=tflops, accelerator_kinds=kinds)
