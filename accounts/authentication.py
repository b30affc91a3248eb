from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions

from marketplace.api.throttling import credential_refused
from marketplace.errors import ApplicationError

from .errors import AccountErrorCode
from .models import TeamMembership
from .roles import ROLE_SCOPES, Role, role_scopes_grant
from .scopes import Scope, key_allows, required_scopes
from .services import api_key_authenticate
from .views import client_ip

TEAM_HEADER = "X-Team"  # a person's own key acting for one of their teams: the team's id


def _either(names: list[str]) -> str:
    """`a or b or c`, in the request's language."""
    text = names[0]
    for name in names[1:]:
        text = _("%(first)s or %(second)s") % {"first": text, "second": name}
    return text


def _scopes_check(request, granted: list[str], *, user_is_staff: bool, role: TeamMembership | None = None) -> None:
    """Refuse (403) a request the granted scopes do not cover, naming what it needs. With a team
    role, the refusal says the role is why (`role_forbids`)."""
    view = (request.parser_context or {}).get("view")
    needed = required_scopes(view, request.method) if view is not None else None
    if needed is None or key_allows(granted, needed, user_is_staff=user_is_staff):
        return
    names = _either(sorted(needed)) if "account" not in needed else _("every scope of the account")
    if role is not None and not key_allows(list(ROLE_SCOPES[role.role]), needed, user_is_staff=False):
        raise exceptions.PermissionDenied(
            _("Your role in %(team)s (%(role)s) does not allow this: it needs %(scopes)s.")
            % {"team": role.team.name, "role": Role(role.role).label.lower(), "scopes": names},
            code=AccountErrorCode.ROLE_FORBIDS,
        )
    raise exceptions.PermissionDenied(
        _("This API key lacks the scope this request needs: %(scopes)s.") % {"scopes": names},
        code=AccountErrorCode.INSUFFICIENT_SCOPE,
    )


def _team_membership_from_header(request, user) -> TeamMembership | None:
    team_id = request._request.headers.get(TEAM_HEADER)
    if team_id is None:
        return None
    if user.is_team:
        raise exceptions.PermissionDenied(
            _("A team's key acts for its team only: leave out %(header)s.") % {"header": TEAM_HEADER},
            code=AccountErrorCode.ROLE_FORBIDS,
        )
    membership = None
    if team_id.strip().isdigit():
        membership = (
            TeamMembership.objects.select_related("team", "team__account")
            .filter(user=user, team_id=int(team_id))
            .first()
        )
    if membership is None or not membership.team.account.is_active:
        raise exceptions.PermissionDenied(
            _("%(header)s names no team you belong to.") % {"header": TEAM_HEADER}, code=AccountErrorCode.NOT_A_MEMBER
        )
    return membership


class BearerApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` with a key from POST /api/v1/auth/keys/ or the account page.

    Refuses an unknown, revoked or expired key (401 `api_key_invalid` / `api_key_revoked` /
    `api_key_expired`) and a request the key's scopes do not cover (403 `insufficient_scope`, naming
    the scope), whatever the view: each view names its area (`accounts.scopes`). A person's key with
    `X-Team: <team id>` acts for that team, with what both the key and the person's role allow
    (403 `role_forbids` when the role is what refuses); a team's own key acts for its team."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header: use 'Bearer <key>'."))
        try:
            api_key = api_key_authenticate(key=parts[1], client_ip=client_ip(request._request))
        except ApplicationError as refused:
            credential_refused(request)  # 429 once an address keeps presenting refused keys
            raise exceptions.AuthenticationFailed(refused.detail, code=refused.code) from None
        user = api_key.user
        membership = _team_membership_from_header(request, user)
        if membership is not None:
            _scopes_check(
                request, role_scopes_grant(membership.role, api_key.scopes), user_is_staff=False, role=membership
            )
            request._request.person = user
            request._request.team_membership = membership
            return (membership.team.account, api_key)
        _scopes_check(request, api_key.scopes, user_is_staff=user.is_staff)
        request._request.team_membership = None  # a browser session's team does not carry over to a key
        if user.is_staff and Scope.STAFF not in api_key.scopes:
            user.withhold_staff_powers()  # this request acts as an ordinary account
        return (user, api_key)

    def authenticate_header(self, request) -> str:
        return self.keyword


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser's session. A person acting for a team in the browser (`accounts.middleware`)
    calls the API as the team, with what their role allows."""

    def authenticate(self, request):
        result = super().authenticate(request)
        membership = getattr(request._request, "team_membership", None)  # accounts.middleware
        if result is not None and membership is not None:
            _scopes_check(request, list(ROLE_SCOPES[membership.role]), user_is_staff=False, role=membership)
        return result
