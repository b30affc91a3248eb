from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import ApiKey, Notification, Team, TeamInvitation, TeamMembership, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "role", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["role", "is_team", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "role")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "role", "password1", "password2")}),)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["created_at", "revoked_at"]
    search_fields = ["name", "prefix", "user__email"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at"]
    list_select_related = ["user"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "title", "created_at", "read_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["user__email", "title"]
    list_select_related = ["user"]


class TeamMembershipInline(admin.TabularInline):
    """Who is in the team, by role. Roles are the team's owners' to change, not staff's."""

    model = TeamMembership
    extra = 0
    can_delete = False
    fields = ["user", "role", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams, for support: the account that pays (suspend it on the user page) and the members."""

    list_display = ["name", "account", "created_at"]
    search_fields = ["name", "memberships__user__email"]
    readonly_fields = ["name", "account", "created_at"]
    list_select_related = ["account"]
    inlines = [TeamMembershipInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TeamInvitation)
class TeamInvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "team", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role", "created_at"]
    search_fields = ["email", "team__name"]
    readonly_fields = ["email", "team", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    exclude = ["token_hash"]
    list_select_related = ["team", "invited_by"]

    def has_add_permission(self, request) -> bool:
        return False
