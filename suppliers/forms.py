from django import forms

from marketplace.models import AcceleratorModel, Region, Zone

from .hosts import HOST_FIELDS
from .models import Host, Organization
from .organizations import ORGANIZATION_FIELDS


class OrganizationForm(forms.ModelForm):
    website = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Organization
        fields = ORGANIZATION_FIELDS
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"payout_country": "Two letters, e.g. US, DE, SG: where your payout bank account is."}


class HostForm(forms.ModelForm):
    """Field-level validation here; the business rules (capacity, policy) come from the service."""

    accelerator_model = forms.ModelChoiceField(
        queryset=AcceleratorModel.objects.filter(is_active=True),
        help_text="For CPU-only servers choose the CPU model and give the socket count below.",
    )
    region = forms.ModelChoiceField(queryset=Region.objects.all())
    zone = forms.ModelChoiceField(queryset=Zone.objects.select_related("region"), required=False)
    power_per_accelerator_watts = forms.IntegerField(
        required=False, min_value=1, max_value=5000, help_text="Leave empty to use the model's TDP."
    )
    offer_ends_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Optional. No new rentals after this time (UTC).",
    )

    class Meta:
        model = Host
        fields = HOST_FIELDS

    OPTIONAL_WITH_DEFAULTS = ("reserved_discount_week", "reserved_discount_month", "reserved_discount_quarter")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.OPTIONAL_WITH_DEFAULTS:
            self.fields[name].required = False
            self.fields[name].help_text = "Fraction off the on-demand price, e.g. 0.20. Empty: the default."
        self.fields["no_accelerator_price_per_vcpu_hour"].required = False
        self.fields["no_accelerator_price_per_vcpu_hour"].help_text += " Empty: $0.01."
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
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
