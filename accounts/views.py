import ipaddress

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from marketplace.errors import ApplicationError, error_body
from marketplace.forms import add_service_errors
from suppliers import organizations

from . import services, teams
from .errors import AccountErrorCode, login_locked_detail
from .forms import ApiKeyForm, EmailAuthenticationForm, InvitationForm, SignupForm, SshKeyForm, TeamForm
from .middleware import ACTING_TEAM_SESSION_KEY
from .models import ApiKey, Notification, SshKey, User
from .roles import MANAGERS, Role, role_allows
from .scopes import ACCOUNT, Scope, page_scope


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


@page_scope(None)
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
            messages.success(request, _("Welcome! Your account is ready."))
            return redirect("accounts:home")
    return render(request, "accounts/signup.html", {"form": form})


@page_scope(None)
@login_required
def home(request):
    """Send people where their role starts: suppliers to their dashboard, buyers to theirs."""
    if request.user.is_staff:
        return redirect("admin:index")
    if request.user.role == User.Role.SUPPLIER:
        return redirect("suppliers:dashboard")
    return redirect("orders:dashboard")


@page_scope(ACCOUNT)
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


@page_scope(ACCOUNT)
@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    api_key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    services.api_key_revoke(api_key=api_key)
    messages.success(request, _("Key “%(name)s” revoked.") % {"name": api_key.name})
    return redirect("accounts:api_keys")


@page_scope(Scope.INSTANCES)
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
            messages.success(
                request,
                _("Key “%(name)s” added (%(fingerprint)s).") % {"name": key.name, "fingerprint": key.fingerprint},
            )
            return redirect("accounts:ssh_keys")
    keys = SshKey.objects.filter(user=request.user)
    return render(request, "accounts/ssh_keys.html", {"form": form, "keys": keys})


@page_scope(Scope.INSTANCES)
@login_required
@require_POST
def ssh_key_delete(request, key_id: int):
    key = get_object_or_404(SshKey, pk=key_id, user=request.user)
    services.ssh_key_delete(user=request.user, key_id=key.pk)
    messages.success(request, _("Key “%(name)s” deleted; instances already ordered keep it.") % {"name": key.name})
    return redirect("accounts:ssh_keys")


@page_scope(None)
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


# --- Teams and invitations -----------------------------------------------------------------------


def posted_int(request, name: str) -> int | None:
    value = request.POST.get(name, "")
    return int(value) if value.isdigit() and len(value) < 12 else None


def members_post(request, *, invite, role_set, remove, revoke) -> tuple[bool, InvitationForm]:
    """One POST to a members page (a team's or a supplier organization's): invite, change a role,
    remove or leave, revoke an invitation. Returns whether it succeeded, and the invite form."""
    action = request.POST.get("action")
    form = InvitationForm(request.POST if action == "invite" else None)
    user_id = posted_int(request, "user")
    try:
        if action == "invite":
            if not form.is_valid():
                return False, form
            issued = invite(email=form.cleaned_data["email"], role=form.cleaned_data["role"])
            messages.success(request, _("Invitation emailed to %(email)s.") % {"email": issued.invitation.email})
        elif action == "role" and user_id is not None:
            role_set(user_id=user_id, role=request.POST.get("role"))
            messages.success(request, _("Role changed."))
        elif action == "remove" and user_id is not None:
            remove(user_id=user_id)
            messages.success(request, _("You left.") if user_id == request.person.pk else _("Member removed."))
        elif action == "revoke" and posted_int(request, "invitation") is not None:
            revoke(invitation_id=posted_int(request, "invitation"))
            messages.success(request, _("Invitation revoked."))
        else:
            messages.error(request, _("Unknown request."))
            return False, form
    except ApplicationError as error:
        if action == "invite":
            add_service_errors(form, error)
        else:
            messages.error(request, error.detail)
        return False, form
    return True, InvitationForm()


def members_context(*, memberships, invitations, my_role: str, person: User) -> dict:
    return {
        "memberships": memberships.select_related("user").order_by("user__email"),
        "open_invitations": [i for i in invitations.order_by("-created_at")[:100] if i.is_open()],
        "my_role": my_role,
        "my_role_label": Role(my_role).label if my_role in Role.values else my_role,
        "manages": my_role in MANAGERS,
        "roles": Role.choices,
        "person": person,
    }


@page_scope(None)
@login_required
def teams_page(request):
    """The person's teams: create one, see their role in each, act for one."""
    person = request.person
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = teams.team_create(owner=person, name=form.cleaned_data["name"])
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, _("Team %(name)s created: invite people and top up its wallet.") % {"name": team.name}
            )
            return redirect("accounts:team", team_id=team.pk)
    memberships = teams.team_memberships_of(user=person)
    return render(request, "accounts/teams.html", {"form": form, "memberships": memberships})


@page_scope(None)
@login_required
def team_page(request, team_id: int):
    person = request.person
    membership = teams.team_membership_get(user=person, team_id=team_id)
    team = membership.team
    invite_form = InvitationForm()
    if request.method == "POST" and request.POST.get("action") == "rename":
        try:
            teams.team_rename(team_id=team.pk, by=person, name=request.POST.get("name"))
        except ApplicationError as error:
            messages.error(request, error.detail)
        return redirect("accounts:team", team_id=team.pk)
    if request.method == "POST":
        done, invite_form = members_post(
            request,
            invite=lambda **kw: teams.team_invite(team_id=team.pk, by=person, **kw),
            role_set=lambda **kw: teams.team_member_role_set(team_id=team.pk, by=person, **kw),
            remove=lambda **kw: teams.team_member_remove(team_id=team.pk, by=person, **kw),
            revoke=lambda **kw: teams.team_invitation_revoke(team_id=team.pk, by=person, **kw),
        )
        if done:
            still_in = team.memberships.filter(user=person).exists()
            return redirect("accounts:team", team_id=team.pk) if still_in else redirect("accounts:teams")
    context = members_context(
        memberships=team.memberships, invitations=team.invitations, my_role=membership.role, person=person
    )
    context |= {"team": team, "membership": membership, "invite_form": invite_form}
    return render(request, "accounts/team.html", context)


@page_scope(None)
@login_required
@require_POST
def act(request):
    """Act for a team (its wallet, instances, keys) or, with no team, for yourself."""
    team_id = request.POST.get("team", "")
    if not team_id:
        request.session.pop(ACTING_TEAM_SESSION_KEY, None)
        messages.success(request, _("You act for yourself."))
        return redirect("orders:instances")
    membership = teams.team_membership_get(user=request.person, team_id=team_id)
    request.session[ACTING_TEAM_SESSION_KEY] = membership.team_id
    messages.success(
        request,
        _("You act for %(team)s as %(role)s.")
        % {"team": membership.team.name, "role": membership.get_role_display().lower()},
    )
    if role_allows(membership.role, Scope.INSTANCES, write=False):
        return redirect("orders:instances")
    if role_allows(membership.role, Scope.BILLING, write=False):
        return redirect("billing:buyer")
    return redirect("offers")


@page_scope(None)
@login_required
def invitation(request, token: str):
    """An emailed invitation link: who invites you to what; accept it (logged in with the invited
    address)."""
    team_invitation = teams.team_invitation_for_token(token)
    org_invitation = None if team_invitation else organizations.organization_invitation_for_token(token)
    found = team_invitation or org_invitation
    if found is None:
        return render(request, "accounts/refused.html", {"reason": _("This invitation link is not valid.")}, status=404)
    if request.method == "POST":
        if team_invitation is not None:
            joined = teams.team_invitation_accept(token=token, user=request.person)
            messages.success(
                request,
                _("You joined %(team)s. Switch to it from the header to act for it.") % {"team": joined.team.name},
            )
            return redirect("accounts:team", team_id=joined.team_id)
        organizations.organization_invitation_accept(token=token, user=request.person)
        messages.success(request, _("You joined %(organization)s.") % {"organization": found.organization.name})
        return redirect("suppliers:members")
    target = team_invitation.team.name if team_invitation else found.organization.name
    return render(request, "accounts/invitation.html", {"invitation": found, "target": target})
