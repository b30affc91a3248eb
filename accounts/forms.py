from django import forms
from django.contrib.auth.forms import AuthenticationForm

from .models import User


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
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CI pipeline'.")


class SshKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="A label; defaults to the key's comment.")
    public_key = forms.CharField(
        label="Public key",
        max_length=16384,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAAC3Nza... you@laptop"}),
        help_text="The contents of your .pub file (e.g. ~/.ssh/id_ed25519.pub). Never the private key.",
    )
