import ipaddress

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from marketplace.errors import ApplicationError, error_body
from marketplace.forms import add_service_errors

from . import services
from .errors import AccountErrorCode, login_locked_detail
from .forms import ApiKeyForm, EmailAuthenticationForm, SignupForm, SshKeyForm
from .models import ApiKey, Notification, SshKey, User


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
    form = ApiKeyForm(request.POST or None, user=request.user)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.api_key_issue(
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
            )
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            form = ApiKeyForm(user=request.user)
    keys = ApiKey.objects.filter(user=request.user)
    context = {"form": form, "keys": keys, "issued": issued, "now": timezone.now()}
    return render(request, "accounts/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    api_key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” revoked.")
    return redirect("accounts:api_keys")


@login_required
def ssh_keys(request):
    """The account's SSH public keys: orders install them (all, unless the API order names some)."""
    form = SshKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key = services.ssh_key_add(user=request.user, **form.cleaned_data)
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Key “{key.name}” added ({key.fingerprint}).")
            return redirect("accounts:ssh_keys")
    keys = SshKey.objects.filter(user=request.user)
    return render(request, "accounts/ssh_keys.html", {"form": form, "keys": keys})


@login_required
@require_POST
def ssh_key_delete(request, key_id: int):
    key = get_object_or_404(SshKey, pk=key_id, user=request.user)
    services.ssh_key_delete(user=request.user, key_id=key.pk)
    messages.success(request, f"Key “{key.name}” deleted; instances already ordered keep it.")
    return redirect("accounts:ssh_keys")


@login_required
def notifications(request):
    """In-app notifications; opening the page marks them read."""
    items = list(Notification.objects.filter(user=request.user)[:100])
    Notification.objects.filter(user=request.user, read_at__isnull=True).update(read_at=timezone.now())
    return render(request, "accounts/notifications.html", {"items": items})


# --- Login throttling: django-axes calls these (AXES_* settings); every way in that checks a password
# (this login page, the admin's, the API key exchange) goes through Django's authenticate() and so axes.


def client_ip(request: HttpRequest) -> str | None:
    """The client's address (AXES_CLIENT_IP_CALLABLE). With TRUSTED_PROXY_COUNT = 0, REMOTE_ADDR. With N,
    the Nth X-Forwarded-For entry from the right, the one our outermost proxy wrote, as DRF's NUM_PROXIES
    reads it: entries further left are whatever the client sent, and are never read."""
    remote_addr = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote_addr
    entries = [entry.strip() for entry in forwarded.split(",")]
    candidate = entries[-min(proxies, len(entries))]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:  # fewer proxies than configured answered; do not store what the client wrote
        return remote_addr
    return candidate


def login_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """The account a login names (AXES_USERNAME_CALLABLE), as accounts store emails: trimmed, lower-case,
    so `Buyer@Example.com ` counts against the same account as buyer@example.com."""
    field = settings.AXES_USERNAME_FORM_FIELD
    value = credentials.get(field) if credentials is not None else request.POST.get(field)
    username = str(value or "").strip().lower()
    return username or None


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The answer to a locked-out login (AXES_LOCKOUT_CALLABLE, sent by AxesMiddleware): the API's error
    shape under /api/, a page elsewhere (this login page, the admin's). 429, with Retry-After set to the
    longest the lock can still last."""
    seconds = settings.LOGIN_LOCKOUT_SECONDS
    detail = login_locked_detail(lockout_seconds=seconds)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body(AccountErrorCode.LOGIN_LOCKED, detail), status=429)
    else:
        response = render(request, "accounts/locked_out.html", {"detail": detail}, status=429)
    response["Retry-After"] = str(seconds)
    return response
