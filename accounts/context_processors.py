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
    return {
        "acting_membership": getattr(request, "team_membership", None),
        "person": person,
        "my_team_memberships": team_memberships_of(user=person),
    }
