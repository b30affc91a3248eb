from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.teams import (
    InvitationSerializer,
    InviteSerializer,
    MemberSerializer,
    RoleSerializer,
    open_invitations,
)
from accounts.scopes import Scope
from marketplace.api.inputs import CheckedLookupMixin
from marketplace.errors import NotFound
from marketplace.idempotency import idempotent
from marketplace.models import Offer
from orders import supply
from suppliers import agent_services, hosts, organizations, selectors
from suppliers.errors import SupplierErrorCode

from .serializers import HostSerializer, MaintenanceSerializer, OrganizationSerializer


class OrganizationView(APIView):
    """The caller's supplier organization: GET it, POST to start onboarding, PATCH to edit."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER

    def _own(self, request):
        organization = selectors.organization_for_user(user=request.user)
        if organization is None:
            raise NotFound(
                "You have no supplier organization yet; POST to create one.", code=SupplierErrorCode.NOT_A_SUPPLIER
            )
        return organization

    @extend_schema(responses=OrganizationSerializer)
    def get(self, request):
        return Response(OrganizationSerializer(self._own(request)).data)

    @extend_schema(request=OrganizationSerializer, responses={201: OrganizationSerializer})
    @idempotent
    def post(self, request):
        data = OrganizationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = organizations.organization_create(owner=request.user, **data.validated_data)
        return Response(OrganizationSerializer(organization).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=OrganizationSerializer, responses=OrganizationSerializer)
    def patch(self, request):
        organization = self._own(request)
        data = OrganizationSerializer(organization, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        organization = organizations.organization_update(by=request.user, **data.validated_data)
        return Response(OrganizationSerializer(organization).data)


class HostViewSet(CheckedLookupMixin, viewsets.ModelViewSet):
    """The caller's organization's hosts (staff see all). Another supplier's host is a 404."""

    serializer_class = HostSerializer
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        offers = Offer.objects.listed().select_related("instance_type").order_by("price_per_hour")
        return (
            selectors.host_list_for_user(user=self.request.user)
            .prefetch_related(Prefetch("offers", queryset=offers))
            .order_by("name", "id")
        )

    def get_object(self):
        if self.request.method in permissions.SAFE_METHODS:
            host = selectors.host_get_for_user(user=self.request.user, host_id=self.kwargs["pk"])
        else:
            host = selectors.host_get_for_member(user=self.request.user, host_id=self.kwargs["pk"])
        self.check_object_permissions(self.request, host)
        return host

    def _respond(self, host, status_code=status.HTTP_200_OK):
        host = self.get_queryset().get(pk=host.pk)
        return Response(self.get_serializer(host).data, status=status_code)

    @idempotent
    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        host = hosts.host_create(user=request.user, **data.validated_data)
        return self._respond(host, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        host = self.get_object()
        data = self.get_serializer(host, data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        host = supply.host_update(host=host, **data.validated_data)
        return self._respond(host)

    def destroy(self, request, *args, **kwargs):
        hosts.host_delete(host=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def delist(self, request, pk=None):
        """Pause the host's offers."""
        return self._respond(hosts.host_set_listed(host=self.get_object(), listed=False))

    @extend_schema(request=None, responses={201: dict})
    @action(detail=True, methods=["post"], url_path="registration-token")
    def registration_token(self, request, pk=None):
        """A one-time token (24 h) for `python -m agent register --token ...` on this host."""
        token = agent_services.host_registration_token_issue(host=self.get_object(), user=request.user)
        return Response({"token": token, "expires_in_hours": 24}, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=MaintenanceSerializer, responses={200: MaintenanceSerializer(many=True), 201: MaintenanceSerializer}
    )
    @action(detail=True, methods=["get", "post"])
    def maintenance(self, request, pk=None):
        """Planned maintenance windows; POST schedules one (renters are notified)."""
        host = self.get_object()
        if request.method == "GET":
            return Response(MaintenanceSerializer(host.maintenance_windows.all(), many=True).data)
        data = MaintenanceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        window = supply.maintenance_schedule(user=request.user, host=host, **data.validated_data)
        return Response(MaintenanceSerializer(window).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def relist(self, request, pk=None):
        """Resume the host's offers."""
        return self._respond(hosts.host_set_listed(host=self.get_object(), listed=True))


class OrganizationMemberListView(APIView):
    """Who is in your supplier organization, with their roles."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request):
        _, members = organizations.organization_members(by=request.user)
        return Response(MemberSerializer(members, many=True).data)


class OrganizationMemberView(APIView):
    """PATCH a member's role (owners and admins; admins only below admin); DELETE removes them, or
    yourself (leaving). The organization keeps at least one owner."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER

    @extend_schema(request=RoleSerializer, responses=MemberSerializer)
    def patch(self, request, user_id: int):
        data = RoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changed = organizations.organization_member_role_set(by=request.user, user_id=user_id, **data.validated_data)
        return Response(MemberSerializer(changed).data)

    @extend_schema(responses={204: None})
    def delete(self, request, user_id: int):
        organizations.organization_member_remove(by=request.user, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationInvitationListView(APIView):
    """Open invitations to your organization; POST emails a new one (owners and admins)."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER

    @extend_schema(responses=InvitationSerializer(many=True))
    def get(self, request):
        invitations = open_invitations(organizations.organization_invitations(by=request.user))
        return Response(InvitationSerializer(invitations, many=True).data)

    @extend_schema(request=InviteSerializer, responses={201: InvitationSerializer})
    def post(self, request):
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = organizations.organization_invite(by=request.user, **data.validated_data)
        return Response(InvitationSerializer(issued.invitation).data, status=status.HTTP_201_CREATED)


class OrganizationInvitationView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.SUPPLIER

    @extend_schema(responses={204: None})
    def delete(self, request, invitation_id: int):
        organizations.organization_invitation_revoke(by=request.user, invitation_id=invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
