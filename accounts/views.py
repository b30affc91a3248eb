from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from marketplace.errors import ApplicationError
from marketplace.forms import add_service_errors

from . import services
from .forms import ApiKeyForm, EmailAuthenticationForm, SignupForm
from .models import ApiKey, Notification, User


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


def signup(request):
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                role=form.cleaned_data["role"],
                full_name=form.cleaned_data["full_name"],
            )
        except ApplicationError as error:
            if "password" in error.fields:
                error.fields["password1"] = error.fields.pop("password")
            add_service_errors(form, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome! Your account is ready.")
            return redirect("accounts:home")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def home(request):
    """Send people where their role starts: suppliers to their dashboard, buyers to the offers."""
    if request.user.is_staff:
        return redirect("admin:index")
    if request.user.role == User.Role.SUPPLIER:
        return redirect("suppliers:dashboard")
    return redirect("offers")


@login_required
def api_keys(request):
    form = ApiKeyForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.api_key_issue(user=request.user, name=form.cleaned_data["name"])
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            form = ApiKeyForm()
    keys = ApiKey.objects.filter(user=request.user)
    return render(request, "accounts/api_keys.html", {"form": form, "keys": keys, "issued": issued})


@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    api_key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” revoked.")
    return redirect("accounts:api_keys")


@login_required
def notifications(request):
    """In-app notifications; opening the page marks them read."""
    items = list(Notification.objects.filter(user=request.user)[:100])
    Notification.objects.filter(user=request.user, read_at__isnull=True).update(read_at=timezone.now())
    return render(request, "accounts/notifications.html", {"items": items})
