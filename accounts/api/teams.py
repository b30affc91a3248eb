"""Teams over the API: a person's teams, their members and invitations, and accepting an emailed
invitation (to a team or a supplier organization). Acting *for* a team is done with the team's own
keys or with `X-Team: <id>` on a member's key (`accounts.authentication`)."""

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import teams
from accounts.memberships import invitation_invalid
from accounts.models import TeamMembership
from accounts.roles import MANAGERS, Role
from accounts.scopes import ACCOUNT
from marketplace.api import json_types
from marketplace.idempotency import idempotent
from suppliers import organizations


def person_of(request):
    """The person behind a request, also when it acts for a team."""
    membership = getattr(request._request, "team_membership", None)
    return membership.user if membership is not None else request.user


class MemberSerializer(json_types.Serializer):
    """A member of a team or a supplier organization."""

    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class InvitationSerializer(json_types.Serializer):
    """An open invitation to a team or a supplier organization (its link goes only to `email`)."""

    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    invited_by = serializers.EmailField(source="invited_by.email", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


def open_invitations(invitations) -> list:
    return [i for i in invitations.select_related("invited_by").order_by("-created_at")[:100] if i.is_open()]


class TeamSerializer(json_types.Serializer):
    id = serializers.IntegerField(source="team.id")
    name = serializers.CharField(source="team.name")
    role = serializers.ChoiceField(choices=Role.choices, help_text="Your role in the team.")
    joined_at = serializers.DateTimeField(source="created_at")


class TeamDetailSerializer(TeamSerializer):
    members = serializers.SerializerMethodField()
    open_invitations = serializers.SerializerMethodField(help_text="Shown to owners and admins.")

    def get_members(self, membership: TeamMembership) -> list[dict]:
        rows = membership.team.memberships.select_related("user").order_by("user__email")
        return MemberSerializer(rows, many=True).data

    def get_open_invitations(self, membership: TeamMembership) -> list[dict]:
        if membership.role not in MANAGERS:
            return []
        return InvitationSerializer(open_invitations(membership.team.invitations), many=True).data


class TeamNameSerializer(json_types.Serializer):
    name = serializers.CharField(max_length=100)


class InviteSerializer(json_types.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class RoleSerializer(json_types.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class AcceptSerializer(json_types.Serializer):
    token = serializers.CharField(max_length=200, help_text="The token at the end of the emailed link.")


class AcceptedSerializer(json_types.Serializer):
    joined = serializers.ChoiceField(choices=["team", "organization"])
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class TeamViewSet(viewsets.GenericViewSet):
    """Your teams. Owners and admins invite (by email), change roles and remove members; anyone
    may leave (DELETE themselves from members); a team keeps at least one owner."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = ACCOUNT
    serializer_class = TeamSerializer
    queryset = TeamMembership.objects.none()
    pagination_class = None

    def _membership(self) -> TeamMembership:
        return teams.team_membership_get(user=person_of(self.request), team_id=self.kwargs["pk"])

    def list(self, request):
        return Response(TeamSerializer(teams.team_memberships_of(user=person_of(request)), many=True).data)

    @extend_schema(request=TeamNameSerializer, responses={201: TeamDetailSerializer})
    @idempotent
    def create(self, request):
        data = TeamNameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = teams.team_create(owner=person_of(request), name=data.validated_data["name"])
        membership = teams.team_membership_get(user=person_of(request), team_id=team.pk)
        return Response(TeamDetailSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TeamDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(TeamDetailSerializer(self._membership()).data)

    @extend_schema(request=TeamNameSerializer, responses=TeamDetailSerializer)
    def partial_update(self, request, pk=None):
        data = TeamNameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = self._membership()
        teams.team_rename(team_id=membership.team_id, by=person_of(request), name=data.validated_data["name"])
        return Response(TeamDetailSerializer(self._membership()).data)

    @extend_schema(request=InviteSerializer, responses={201: InvitationSerializer})
    @action(detail=True, methods=["post"])
    def invitations(self, request, pk=None):
        """Email an invitation (the link is not returned: it goes to the invited address only)."""
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = self._membership()
        issued = teams.team_invite(team_id=membership.team_id, by=person_of(request), **data.validated_data)
        return Response(InvitationSerializer(issued.invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"invitations/(?P<invitation_id>\d{1,12})")
    def invitation_revoke(self, request, pk=None, invitation_id=None):
        membership = self._membership()
        teams.team_invitation_revoke(
            team_id=membership.team_id, by=person_of(request), invitation_id=int(invitation_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RoleSerializer, responses=MemberSerializer)
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<user_id>\d{1,12})")
    def member(self, request, pk=None, user_id=None):
        """PATCH a member's role; DELETE removes them (or, for yourself, leaves the team)."""
        membership = self._membership()
        by = person_of(request)
        if request.method == "DELETE":
            teams.team_member_remove(team_id=membership.team_id, by=by, user_id=int(user_id))
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = RoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changed = teams.team_member_role_set(
            team_id=membership.team_id, by=by, user_id=int(user_id), role=data.validated_data["role"]
        )
        return Response(MemberSerializer(changed).data)


class InvitationAcceptView(APIView):
    """Accept an emailed invitation to a team or a supplier organization, as the person it was
    sent to (the key's account must have that email address)."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = ACCOUNT

    @extend_schema(request=AcceptSerializer, responses={201: AcceptedSerializer})
    def post(self, request):
        data = AcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, person = data.validated_data["token"], person_of(request)
        if teams.team_invitation_for_token(token) is not None:
            joined = teams.team_invitation_accept(token=token, user=person)
            body = {"joined": "team", "id": joined.team_id, "name": joined.team.name, "role": joined.role}
        elif organizations.organization_invitation_for_token(token) is not None:
            member = organizations.organization_invitation_accept(token=token, user=person)
            body = {"joined": "organization", "id": member.organization_id, "name": member.organization.name}
            body["role"] = member.role
        else:
            raise invitation_invalid()
        return Response(AcceptedSerializer(body).data, status=status.HTTP_201_CREATED)
