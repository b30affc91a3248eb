"""Acting for a team in the browser: the session names the team; each request the person's
membership is read again (a removed member or a changed role counts at once), `request.user`
becomes the team's account and `request.person` stays the person. Pages then open by the role:
each page view names its area (`accounts.scopes.page_scope`) and a page without one is closed to
teams. API views are checked by the authentication classes (`accounts.authentication`)."""

from __future__ import annotations

from django.shortcuts import render
from django.utils.translation import gettext as _

from marketplace.errors import ApplicationError

from .models import TeamMembership
from .roles import Role, role_allows
from .scopes import SAFE_METHODS

ACTING_TEAM_SESSION_KEY = "acting_team"


def acting_membership(request) -> TeamMembership | None:
    """The membership the person acts by in this request, or None when acting for themselves."""
    return getattr(request, "team_membership", None)


class ActingTeamMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.person = request.user
        request.team_membership = None
        session = getattr(request, "session", None)
        team_id = session.get(ACTING_TEAM_SESSION_KEY) if session is not None else None
        if team_id is not None and request.user.is_authenticated:
            membership = (
                TeamMembership.objects.select_related("team", "team__account")
                .filter(user=request.user, team_id=team_id)
                .first()
            )
            if membership is None or not membership.team.account.is_active:
                session.pop(ACTING_TEAM_SESSION_KEY, None)
            else:
                request.team_membership = membership
                request.user = membership.team.account
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        membership = acting_membership(request)
        if membership is None:
            return None
        if hasattr(getattr(view_func, "cls", None), "authentication_classes"):
            return None  # an API view (DRF's as_view sets `cls`): its authentication checks the role
        if hasattr(view_func, "scope_area"):
            if role_allows(membership.role, view_func.scope_area, write=request.method not in SAFE_METHODS):
                return None
            reason = _("Your role in %(organization)s (%(role)s) does not allow this.") % {
                "organization": membership.team.name,
                "role": Role(membership.role).label.lower(),
            }
        else:
            reason = _("This page is not part of a team: switch to your personal account to open it.")
        return render(request, "accounts/refused.html", {"reason": reason, "acting": True}, status=403)

    def process_exception(self, request, exception):
        """A page whose service refused (a role that does not allow it, a closed invitation, a team
        one is not in): the refusal's own words and status, not a 500."""
        if isinstance(exception, ApplicationError) and 400 <= exception.status_code < 500:
            context = {"reason": exception.detail, "acting": acting_membership(request) is not None}
            return render(request, "accounts/refused.html", context, status=exception.status_code)
        return None
