"""Forms of the staff billing page. They parse what was typed (money through `parse_money`, ids
as ASCII whole numbers, text without control characters) and show each problem next to its field,
keeping what was typed; the flows in `billing.adjustments` decide the rest."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from marketplace.api.inputs import whole_number
from marketplace.currency import platform_currency
from marketplace.errors import ErrorCode
from marketplace.models import validate_clean_text
from marketplace.money import parse_money

from .adjustments import REASON_MAX_LENGTH
from .models import CreditNoteRequest, UsageRecord


class CleanTextField(forms.CharField):
    """Free text: trimmed, line breaks as newlines, at most `max_length` characters and no control
    characters but newline and tab (`marketplace.models.validate_clean_text`)."""

    def __init__(self, *, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.text_max_length = max_length
        self.widget.attrs.setdefault("maxlength", str(max_length))

    def to_python(self, value):
        text = super().to_python(value).replace("\r\n", "\n").replace("\r", "\n")
        validate_clean_text(text, max_length=self.text_max_length)
        return text


class MoneyField(forms.Field):
    """An amount as typed ("25", "25.50"): a Decimal, never a float; exponents, NaN,
    other scripts' digits and the like are a field error with `invalid_message`."""

    widget = forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})

    def __init__(self, *, invalid_message: str, **kwargs):
        super().__init__(**kwargs)
        self.invalid_message = invalid_message

    def to_python(self, value) -> Decimal | None:
        text = (value or "").strip() if isinstance(value, str) else ""
        if not text:
            return None
        amount = parse_money(text)
        if amount is None:
            raise ValidationError(self.invalid_message, code=ErrorCode.INVALID)
        return amount


class WholeNumberField(forms.Field):
    """An id typed by staff: ASCII digits only (`marketplace.api.inputs.whole_number`)."""

    widget = forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"})

    def __init__(self, *, invalid_message: str, **kwargs):
        super().__init__(**kwargs)
        self.invalid_message = invalid_message
        self.error_messages["required"] = invalid_message

    def to_python(self, value) -> int | None:
        text = (value or "").strip() if isinstance(value, str) else ""
        if not text:
            return None
        number = whole_number(text)
        if number is None:
            raise ValidationError(self.invalid_message, code=ErrorCode.INVALID)
        return number


def _reason_field(label: str, required_message: str) -> CleanTextField:
    return CleanTextField(max_length=REASON_MAX_LENGTH, label=label, error_messages={"required": required_message})


def amount_format_message(currency_code: str) -> str:
    """How to type an amount, in the currency's own major and minor units."""
    if currency_code == "USD":
        return _("Enter the amount in dollars and cents, such as 25.00.")
    if currency_code == "CNY":
        return _("Enter the amount in yuan and fen, such as 25.00.")
    return _("Enter the amount with at most two decimals, such as 25.00.")


class CreditNoteForm(forms.Form):
    """A credit note to a buyer; above CREDIT_NOTE_APPROVAL_ABOVE it becomes a request for approval."""

    action = "credit"

    email = CleanTextField(
        max_length=254,
        label=gettext_lazy("Buyer email"),
        error_messages={"required": gettext_lazy("Enter the buyer's email.")},
    )
    amount = MoneyField(label=gettext_lazy("Amount"), invalid_message="")  # in the currency: see __init__
    reason = _reason_field(gettext_lazy("Reason (the buyer sees it)"), gettext_lazy("A credit note needs a reason."))

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "credit_%s")
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.input_type = "email"
        currency = platform_currency()
        amount = self.fields["amount"]
        amount.label = _("Amount (%(symbol)s)") % {"symbol": currency.symbol}
        amount.invalid_message = amount_format_message(currency.code)
        amount.error_messages["required"] = amount.invalid_message

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        self.buyer = User.objects.filter(email__iexact=email).first()
        if self.buyer is None:
            raise ValidationError(_("No account with that email."), code=ErrorCode.NOT_FOUND)
        return email


class UsageRefundForm(forms.Form):
    """A refund that reverses one usage record's charge exactly."""

    action = "refund"

    usage_record = WholeNumberField(
        label=gettext_lazy("Usage record id"),
        invalid_message=gettext_lazy("Enter the usage record id (a whole number)."),
    )
    reason = _reason_field(gettext_lazy("Reason"), gettext_lazy("A refund needs a reason."))

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "refund_%s")
        super().__init__(*args, **kwargs)

    def clean_usage_record(self) -> UsageRecord:
        record = UsageRecord.objects.filter(pk=self.cleaned_data["usage_record"]).first()
        if record is None:
            raise ValidationError(_("No such usage record."), code=ErrorCode.NOT_FOUND)
        return record


class CreditNoteDecisionForm(forms.Form):
    """Approve or reject one pending credit note request (a reason is needed to reject)."""

    DECISIONS = ("approve", "reject")

    request = WholeNumberField(invalid_message=gettext_lazy("Choose a credit note request."))
    decision = forms.ChoiceField(choices=[("approve", gettext_lazy("Approve")), ("reject", gettext_lazy("Reject"))])
    reason = CleanTextField(max_length=REASON_MAX_LENGTH, required=False, label=gettext_lazy("Reason to reject"))

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "decision_%s")
        super().__init__(*args, **kwargs)

    def clean_request(self) -> CreditNoteRequest:
        request = CreditNoteRequest.objects.filter(pk=self.cleaned_data["request"]).first()
        if request is None:
            raise ValidationError(_("No such credit note request."), code=ErrorCode.NOT_FOUND)
        return request

    def clean(self):
        data = super().clean()
        if data.get("decision") == "reject" and not data.get("reason"):
            self.add_error("reason", _("A rejection needs a reason."))
        return data
