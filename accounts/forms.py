from datetime import datetime, timedelta

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from .models import User
from .roles import ROLE_HELP, Role
from .scopes import DEFAULT_SCOPES, Scope


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True}))


class SignupForm(forms.Form):
    email = forms.EmailField()
    full_name = forms.CharField(max_length=150, required=False)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)
    role = forms.ChoiceField(
        label="I want to",
        choices=[(User.Role.BUYER, "Rent compute"), (User.Role.SUPPLIER, "Supply compute (list my servers)")],
        widget=forms.RadioSelect,
        initial=User.Role.BUYER,
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ApiKeyForm(forms.Form):
    EXPIRY_CHOICES = [
        ("", "Never"),
        ("7", "In 7 days"),
        ("30", "In 30 days"),
        ("90", "In 90 days"),
        ("365", "In a year"),
    ]

    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CI pipeline'.")
    scopes = forms.MultipleChoiceField(
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. Reading needs 'read' or the area's own scope.",
    )
    expires_in_days = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, required=False)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        offered = [scope for scope in Scope if scope != Scope.STAFF or user.is_staff]
        self.fields["scopes"].choices = [(scope.value, scope.label) for scope in offered]
        self.fields["scopes"].initial = [scope.value for scope in DEFAULT_SCOPES]

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=int(days)) if days else None


class SshKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="A label; defaults to the key's comment.")
    public_key = forms.CharField(
        label="Public key",
        max_length=16384,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAAC3Nza... you@laptop"}),
        help_text="The contents of your .pub file (e.g. ~/.ssh/id_ed25519.pub). Never the private key.",
    )


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Your company or project, e.g. 'Vision research'.")


class InvitationForm(forms.Form):
    email = forms.EmailField(help_text="They accept by logging in (or signing up) with this address.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, help_text=ROLE_HELP)
