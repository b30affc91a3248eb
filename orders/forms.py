from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing.forms import CleanTextField, MoneyField
from marketplace.currency import platform_currency

from .disputes import ANSWER_MAX_LENGTH, REASON_MAX_LENGTH
from .launch import MAX_DISK_GB, launch_templates_visible
from .models import RESERVED_TERMS_HOURS, Pricing
from .requests import OrderRequest


class LaunchFieldsMixin:
    """Ports as "22, 8888" and environment variables as NAME=value lines, for the rent and template forms."""

    cleaned_data: dict

    def clean_ports(self) -> list[int] | None:
        raw = self.cleaned_data.get("ports", "").replace(",", " ").split()
        if not raw:
            return None
        if not all(part.isdigit() for part in raw):
            raise forms.ValidationError(gettext("Port numbers separated by commas, such as 22, 8888."))
        return [int(part) for part in raw]

    def _variables(self, name: str, *, secret: bool) -> list[dict]:
        variables = []
        for number, line in enumerate(self.cleaned_data.get(name, "").splitlines(), 1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise forms.ValidationError(gettext("Line %(number)s: NAME=value.") % {"number": number})
            variables.append({"name": key.strip(), "value": value, "secret": secret})
        return variables

    def clean_environment(self) -> list[dict]:
        return self._variables("environment", secret=False)

    def clean_secret_environment(self) -> list[dict]:
        return self._variables("secret_environment", secret=True)


DEFAULT_TEMPLATE = "hello-web"  # curated: a page that answers on the instance's port


class RentForm(LaunchFieldsMixin, forms.Form):
    """Rent from one offer. Validation of the business rules happens in the service."""

    count = forms.IntegerField(label=_("Count"), min_value=1, max_value=64, initial=1)
    pricing = forms.ChoiceField(
        label=_("Pricing"), choices=Pricing.choices, initial=Pricing.ON_DEMAND, widget=forms.RadioSelect
    )
    max_price_per_hour = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=14,
        decimal_places=6,
        help_text=_("Spot: your bid (required). Otherwise: optional ceiling."),
    )
    term_hours = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label=_("Reserved term"),
        choices=[("", "—"), *((h, label) for h, label in RESERVED_TERMS_HOURS.items())],
    )
    template = forms.ChoiceField(
        required=False,
        label=_("Template"),
        help_text=_("Image, command, ports, environment and disk in one choice; what you fill in below wins."),
    )
    image = forms.CharField(
        label=_("Image"),
        required=False,
        max_length=255,
        widget=forms.TextInput(attrs={"placeholder": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"}),
        help_text=_("Empty: the template's image."),
    )
    command = forms.CharField(
        label=_("Command"), required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2})
    )
    ports = forms.CharField(
        required=False,
        max_length=200,
        label=_("Ports"),
        widget=forms.TextInput(attrs={"placeholder": "22, 8888"}),
        help_text=_("Container ports to reach from outside (SSH is 22). Empty: the template's."),
    )
    environment = forms.CharField(
        label=_("Environment"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "MODEL=llama-3-8b"}),
        help_text=_("One NAME=value per line."),
    )
    secret_environment = forms.CharField(
        required=False,
        label=_("Secret environment"),
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "HF_TOKEN=hf_…", "autocomplete": "off"}),
        help_text=_("One NAME=value per line: stored encrypted, never shown again."),
    )
    disk_gb = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DISK_GB,
        label=_("Disk (GB)"),
        help_text=_("Empty: the type's default. More is billed at the host's storage price."),
    )
    terminate_after_hours = forms.IntegerField(
        label=_("Terminate after hours"),
        required=False,
        min_value=1,
        max_value=24 * 366,
        help_text=_(
            "Optional: terminate automatically after this many hours (at least the minimum rental, and "
            "ending before any maintenance the offer shows)."
        ),
    )
    allow_unverified = forms.BooleanField(
        required=False,
        label=_("Accept an unverified host"),
        help_text=_("Needed to rent from a host not verified yet."),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["max_price_per_hour"].label = gettext("Bid / ceiling (%(symbol)s per instance-hour)") % {
            "symbol": platform_currency().symbol
        }
        templates = list(launch_templates_visible(user).order_by("owner", "name"))
        yours = " · " + gettext("yours")
        self.fields["template"].choices = [("", gettext("— none —"))] + [
            (t.name, f"{t.title} ({t.name}){yours if t.owner_id else ''}") for t in templates
        ]
        if any(t.name == DEFAULT_TEMPLATE and t.owner_id is None for t in templates):
            self.fields["template"].initial = DEFAULT_TEMPLATE

    def order_request(self, *, offer_id: int) -> OrderRequest:
        data = self.cleaned_data
        return OrderRequest(
            offer=offer_id,
            count=data["count"],
            pricing=data["pricing"],
            max_price_per_hour=data.get("max_price_per_hour"),
            term_hours=data.get("term_hours") if data["pricing"] == Pricing.RESERVED else None,
            template=data.get("template") or None,
            image=data.get("image") or "",
            command=data.get("command") or "",
            ports=data.get("ports"),
            environment=(data.get("environment") or []) + (data.get("secret_environment") or []) or None,
            disk_gb=data.get("disk_gb"),
            terminate_after_hours=data.get("terminate_after_hours"),
            allow_unverified=bool(data.get("allow_unverified")),
        )


class LaunchTemplateForm(LaunchFieldsMixin, forms.Form):
    """A buyer's own launch template (no secrets: those are given at order)."""

    name = forms.SlugField(label=_("Name"), max_length=64, help_text=_("What orders and the rent form name it by."))
    title = forms.CharField(label=_("Title"), max_length=120, required=False)
    image = forms.CharField(
        label=_("Image"), max_length=255, widget=forms.TextInput(attrs={"placeholder": "ubuntu:24.04"})
    )
    command = forms.CharField(
        label=_("Command"), required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2})
    )
    ports = forms.CharField(
        required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "22, 8888"}), label=_("Ports")
    )
    environment = forms.CharField(
        label=_("Environment"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "MODEL=llama-3-8b"}),
        help_text=_("One NAME=value per line; no secrets here."),
    )
    disk_gb = forms.IntegerField(required=False, min_value=1, max_value=MAX_DISK_GB, label=_("Recommended disk (GB)"))

    def service_data(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        data["ports"] = self.cleaned_data.get("ports") or []
        return data


class SpendLimitForm(forms.Form):
    spend_limit_per_hour = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spend_limit_per_hour"].label = gettext("Limit (%(symbol)s/hour)") % {
            "symbol": platform_currency().symbol
        }


class ReportAnswerForm(forms.Form):
    """The supplier's answer to a problem report."""

    answer = CleanTextField(
        max_length=ANSWER_MAX_LENGTH,
        label=_("Your answer"),
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("An answer cannot be empty.")},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "answer_%s")
        super().__init__(*args, **kwargs)


class ReportResolveForm(forms.Form):
    """Staff resolve a report: a credit to the buyer (charged to the supplier) or, empty, a rejection."""

    credit = MoneyField(
        required=False,
        invalid_message=_("A credit is a positive amount in whole cents, such as 12.50."),
    )
    reason = CleanTextField(
        max_length=REASON_MAX_LENGTH,
        label=_("Reason (both parties see it)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": _("A resolution needs a reason.")},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "resolve_%s")
        super().__init__(*args, **kwargs)
        self.fields["credit"].label = gettext(
            "Credit to the buyer (%(currency)s, charged to the supplier; empty to reject)"
        ) % {"currency": platform_currency().code}
