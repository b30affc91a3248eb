from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .scopes import page_scope

app_name = "accounts"

urlpatterns = [
    path("login/", page_scope(None)(views.LoginView.as_view()), name="login"),
    path("logout/", page_scope(None)(auth_views.LogoutView.as_view()), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("home/", views.home, name="home"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("notifications/", views.notifications, name="notifications"),
    path("ssh-keys/", views.ssh_keys, name="ssh_keys"),
    path("ssh-keys/<int:key_id>/delete/", views.ssh_key_delete, name="ssh_key_delete"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("teams/", views.teams_page, name="teams"),
    path("teams/<int:team_id>/", views.team_page, name="team"),
    path("act/", views.act, name="act"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
]
