from datetime import datetime, timedelta

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import User
from .roles import ROLE_HELP, Role
from .scopes import DEFAULT_SCOPES, Scope


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True}))


class SignupForm(forms.Form):
    email = forms.EmailField(label=_("Email"))
    full_name = forms.CharField(label=_("Full name"), max_length=150, required=False)
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("Password again"), widget=forms.PasswordInput, strip=False)
    role = forms.ChoiceField(
        label=_("I want to"),
        choices=[(User.Role.BUYER, _("Rent compute")), (User.Role.SUPPLIER, _("Supply compute (list my servers)"))],
        widget=forms.RadioSelect,
        initial=User.Role.BUYER,
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", gettext("The two passwords differ."))
        return cleaned


class ApiKeyForm(forms.Form):
    EXPIRY_CHOICES = [
        ("", _("Never")),
        ("7", _("In 7 days")),
        ("30", _("In 30 days")),
        ("90", _("In 90 days")),
        ("365", _("In a year")),
    ]

    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("What the key is for, e.g. 'CI pipeline'."))
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        help_text=_("What the key may do. Reading needs 'read' or the area's own scope."),
    )
    expires_in_days = forms.ChoiceField(label=_("Expires"), choices=EXPIRY_CHOICES, required=False)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        offered = [scope for scope in Scope if scope != Scope.STAFF or user.is_staff]
        self.fields["scopes"].choices = [(scope.value, scope.label) for scope in offered]
        self.fields["scopes"].initial = [scope.value for scope in DEFAULT_SCOPES]

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=int(days)) if days else None


class SshKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=100, required=False, help_text=_("A label; defaults to the key's comment.")
    )
    public_key = forms.CharField(
        label=_("Public key"),
        max_length=16384,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAAC3Nza... you@laptop"}),
        help_text=_("The contents of your .pub file (e.g. ~/.ssh/id_ed25519.pub). Never the private key."),
    )


class TeamForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("Your company or project, e.g. 'Vision research'.")
    )


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label=_("Email"), help_text=_("They accept by logging in (or signing up) with this address.")
    )
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER, help_text=ROLE_HELP)
