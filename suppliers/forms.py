from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from marketplace.currency import price_text
from marketplace.models import AcceleratorModel, Region, Zone

from .hosts import HOST_FIELDS
from .models import Host, Organization
from .organizations import ORGANIZATION_FIELDS


class OrganizationForm(forms.ModelForm):
    website = forms.URLField(label=_("Website"), required=False, assume_scheme="https")

    class Meta:
        model = Organization
        fields = ORGANIZATION_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "name": _("Name"),
            "legal_name": _("Legal name"),
            "description": _("Description"),
            "contact_name": _("Contact name"),
            "contact_email": _("Contact email"),
            "contact_phone": _("Contact phone"),
            "country": _("Country"),
            "payout_country": _("Payout country"),
        }
        help_texts = {
            "country": _("ISO 3166-1 alpha-2 country of the business."),
            "payout_country": _("Two letters, e.g. US, DE, SG: where your payout bank account is."),
        }


class HostForm(forms.ModelForm):
    """Field-level validation here; the business rules (capacity, policy) come from the service."""

    accelerator_model = forms.ModelChoiceField(
        queryset=AcceleratorModel.objects.filter(is_active=True),
        label=_("Accelerator model"),
        help_text=_("For CPU-only servers choose the CPU model and give the socket count below."),
    )
    region = forms.ModelChoiceField(label=_("Region"), queryset=Region.objects.all())
    zone = forms.ModelChoiceField(label=_("Zone"), queryset=Zone.objects.select_related("region"), required=False)
    power_per_accelerator_watts = forms.IntegerField(
        label=_("Power per accelerator watts"),
        required=False,
        min_value=1,
        max_value=5000,
        help_text=_("Leave empty to use the model's TDP."),
    )
    offer_ends_at = forms.DateTimeField(
        label=_("Offer ends at"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("Optional. No new rentals after this time (UTC)."),
    )

    class Meta:
        model = Host
        fields = HOST_FIELDS
        # The form's own words (the model's verbose names stay as the migrations recorded them).
        labels = {
            "name": _("Name"),
            "pue": _("Data-centre PUE"),
            "accelerator_count": _("Accelerator count"),
            "vcpus": _("vCPUs"),
            "ram_gb": _("RAM (GB)"),
            "disk_gb": _("Disk (GB)"),
            "network_up_mbps": _("Network up (Mbps)"),
            "network_down_mbps": _("Network down (Mbps)"),
            "price_per_unit_hour": _("Price per accelerator-hour (per vCPU-hour for CPU hosts)"),
            "spot_min_price_per_unit_hour": _("Minimum spot bid per unit-hour"),
            "reserved_discount_week": _("Reserved discount, 1 week"),
            "reserved_discount_month": _("Reserved discount, 1 month"),
            "reserved_discount_quarter": _("Reserved discount, 3 months"),
            "storage_price_per_gb_month": _("Storage price per GB-month"),
            "no_accelerator_price_per_vcpu_hour": _("No-GPU mode price per vCPU-hour"),
            "min_rental_hours": _("Minimum rental (hours)"),
            "slicing_policy": _("Slicing policy"),
            "equal_slices": _("Equal slices"),
            "oversubscription_ratio": _("CPU/RAM oversubscription"),
            "public_address": _("Public address"),
            "port_range_start": _("Port range start"),
            "port_range_end": _("Port range end"),
        }
        help_texts = {
            "accelerator_count": _("Accelerators in the server, or CPU sockets for CPU-only hosts."),
            "spot_min_price_per_unit_hour": _("Empty: half the on-demand price."),
            "no_accelerator_price_per_vcpu_hour": _(
                "What a stopped instance costs per vCPU-hour when its buyer starts it without accelerators."
            ),
            "equal_slices": _("For the equal policy: how many equal instances the host is cut into."),
            "public_address": _("IP address or DNS name buyers connect to. Empty: no inbound ports."),
            "port_range_start": _("First host port forwarded to instances. Empty: no inbound ports."),
            "port_range_end": _("Last host port forwarded to instances (inclusive)."),
        }

    OPTIONAL_WITH_DEFAULTS = ("reserved_discount_week", "reserved_discount_month", "reserved_discount_quarter")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.OPTIONAL_WITH_DEFAULTS:
            self.fields[name].required = False
            self.fields[name].help_text = _("Fraction off the on-demand price, e.g. 0.20. Empty: the default.")
        self.fields["no_accelerator_price_per_vcpu_hour"].required = False
        default_price = Host._meta.get_field("no_accelerator_price_per_vcpu_hour").default
        self.fields["no_accelerator_price_per_vcpu_hour"].help_text = " ".join(
            (
                str(self.fields["no_accelerator_price_per_vcpu_hour"].help_text),
                gettext("Empty: %(price)s.") % {"price": price_text(default_price)},
            )
        )
        self.fields["zone"].label_from_instance = lambda zone: f"{zone.code} ({zone.region.code})"
        self.fields["region"].label_from_instance = lambda region: f"{region.name} — {region.tier}"

    def _post_clean(self):
        # Model validation is the service's job (it also knows the organization); skip the
        # ModelForm's own instance construction and validation.
        pass

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        for name in ("power_per_accelerator_watts", "no_accelerator_price_per_vcpu_hour", *self.OPTIONAL_WITH_DEFAULTS):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
