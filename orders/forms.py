from django import forms

from billing.forms import CleanTextField, MoneyField

from .disputes import ANSWER_MAX_LENGTH, REASON_MAX_LENGTH
from .models import RESERVED_TERMS_HOURS, Pricing
from .requests import OrderRequest


class RentForm(forms.Form):
    """Rent from one offer. Validation of the business rules happens in the service."""

    count = forms.IntegerField(min_value=1, max_value=64, initial=1)
    pricing = forms.ChoiceField(choices=Pricing.choices, initial=Pricing.ON_DEMAND, widget=forms.RadioSelect)
    max_price_per_hour = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=6,
        label="Bid / ceiling ($ per instance-hour)",
        help_text="Spot: your bid (required). Otherwise: optional ceiling.",
    )
    term_hours = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="Reserved term",
        choices=[("", "—"), *((h, label) for h, label in RESERVED_TERMS_HOURS.items())],
    )
    image = forms.CharField(max_length=255, initial="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime")
    command = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))
    terminate_after_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=24 * 366,
        help_text="Optional: terminate automatically after this many hours (at least the minimum rental, and "
        "ending before any maintenance the offer shows).",
    )
    allow_unverified = forms.BooleanField(
        required=False, label="Accept an unverified host", help_text="Needed to rent from a host not verified yet."
    )

    def order_request(self, *, offer_id: int) -> OrderRequest:
        data = self.cleaned_data
        return OrderRequest(
            offer=offer_id,
            count=data["count"],
            pricing=data["pricing"],
            max_price_per_hour=data.get("max_price_per_hour"),
            term_hours=data.get("term_hours") if data["pricing"] == Pricing.RESERVED else None,
            image=data["image"],
            command=data.get("command") or "",
            terminate_after_hours=data.get("terminate_after_hours"),
            allow_unverified=bool(data.get("allow_unverified")),
        )


class SpendLimitForm(forms.Form):
    spend_limit_per_hour = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2, label="Limit ($/hour)")


class ReportAnswerForm(forms.Form):
    """The supplier's answer to a problem report."""

    answer = CleanTextField(
        max_length=ANSWER_MAX_LENGTH,
        label="Your answer",
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "An answer cannot be empty."},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "answer_%s")
        super().__init__(*args, **kwargs)


class ReportResolveForm(forms.Form):
    """Staff resolve a report: a credit to the buyer (charged to the supplier) or, empty, a rejection."""

    credit = MoneyField(
        required=False,
        label="Credit to the buyer (USD, charged to the supplier; empty to reject)",
        invalid_message="A credit is a positive amount in whole cents, such as 12.50.",
    )
    reason = CleanTextField(
        max_length=REASON_MAX_LENGTH,
        label="Reason (both parties see it)",
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "A resolution needs a reason."},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "resolve_%s")
        super().__init__(*args, **kwargs)
