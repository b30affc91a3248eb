from .roles import role_allows
from .scopes import ACCOUNT, Scope
from .teams import team_memberships_of


def unread_notifications(request) -> dict:
    """The unread count for the header (one indexed count query per page)."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {}
    return {"unread_notifications": user.notifications.filter(read_at__isnull=True).count()}


def acting_team(request) -> dict:
    """For the header's team switcher: the team acted for (None: personal) and the person's teams."""
    person = getattr(request, "person", None)
    if not (person and person.is_authenticated):
        return {}
    membership = getattr(request, "team_membership", None)
    return {
        "acting_membership": membership,
        "person": person,
        "my_team_memberships": team_memberships_of(user=person),
        # What the page may offer to change: everything for oneself, what the role allows for a team.
        "may_change": {
            area: membership is None or role_allows(membership.role, area, write=True)
            for area in (Scope.ORDERS, Scope.INSTANCES, Scope.BILLING, ACCOUNT)
        },
    }
