from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

from .currency import platform_currency
from .errors import ApplicationError, ErrorCode
from .models import InstanceType, Region
from .money import PRICE_PLACES, parse_money


def add_service_errors(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's refusal on the form: field errors on their fields, the rest on top."""
    placed = False
    for field, messages in (error.fields or {}).items():
        target = field if field in form.fields else None
        for message in messages:
            form.add_error(target, message)
            placed = True
    if not placed:
        form.add_error(None, error.detail)


class RegionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Region) -> str:
        return f"{obj.code} — {obj.name}"


class AvailabilityAlertForm(forms.Form):
    """Subscribe to an instance type's supply (`marketplace.alerts.availability_alert_create`)."""

    instance_type = forms.ModelChoiceField(
        queryset=InstanceType.objects.active().order_by("name"),
        to_field_name="name",
        label=gettext_lazy("Instance type"),
        empty_label=gettext_lazy("Choose a type"),
    )
    region = RegionChoiceField(
        queryset=Region.objects.order_by("code"),
        to_field_name="code",
        required=False,
        label=gettext_lazy("Region"),
        empty_label=gettext_lazy("Any region"),
    )
    max_price_per_hour = forms.CharField(
        required=False,
        widget=forms.TextInput(
            attrs={"inputmode": "decimal", "autocomplete": "off", "placeholder": gettext_lazy("any")}
        ),
        help_text=gettext_lazy("Per instance. Empty: any price."),
    )
    standing = forms.BooleanField(
        required=False,
        label=gettext_lazy("Standing alert"),
        help_text=gettext_lazy(
            "Tell me each time such supply returns after selling out (else: once, then the alert turns off)."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The deployment's currency, in the language of the request that builds the form.
        self.fields["max_price_per_hour"].label = gettext("Max. %(symbol)s per hour") % {
            "symbol": platform_currency().symbol
        }

    def clean_max_price_per_hour(self) -> Decimal | None:
        text = self.cleaned_data["max_price_per_hour"].strip()
        if not text:
            return None
        price = parse_money(text, places=PRICE_PLACES)
        if price is None or price <= 0:
            raise ValidationError(
                gettext("A price above 0, with at most %(places)s decimals (e.g. 2.50).") % {"places": PRICE_PLACES},
                code=ErrorCode.INVALID,
            )
        return price


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=2000,
        help_text=gettext_lazy("An https:// address that answers 2xx; it receives signed JSON."),
    )
    events = forms.MultipleChoiceField(
        label=gettext_lazy("Events"),
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("What it receives. “All events” includes event types added later."),
    )
    description = forms.CharField(label=gettext_lazy("Description"), max_length=200, required=False)

    def __init__(self, *args, event_types: tuple[str, ...], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [("*", gettext_lazy("All events")), *((event, event) for event in event_types)]
        self.fields["events"].initial = ["*"]


class MarketDepthForm(forms.Form):
    """Which order book the market page shows (`orders.market_depth`): an instance type and a
    region of the catalog, each by name; left empty, the page picks the most listed."""

    instance_type = forms.ChoiceField(label=gettext_lazy("Instance type"), required=False)
    region = forms.ChoiceField(label=gettext_lazy("Region"), required=False)

    def __init__(self, *args, instance_types: list[str], regions: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instance_type"].choices = [("", gettext_lazy("Most listed")), *((n, n) for n in instance_types)]
        self.fields["region"].choices = [("", gettext_lazy("Most listed")), *((c, c) for c in regions)]
