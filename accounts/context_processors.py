def unread_notifications(request) -> dict:
    """The unread count for the header (one indexed count query per page)."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {}
    return {"unread_notifications": user.notifications.filter(read_at__isnull=True).count()}
