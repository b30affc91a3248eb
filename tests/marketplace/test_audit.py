from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from billing.adjustments import credit_note_issue
from marketplace.models import AuditEntry
from suppliers.hosts import host_reject
from suppliers.organizations import organization_approve
from tests.factories import HostFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_moderation_and_money_actions_are_audited(buyer):
    staff = UserFactory(is_staff=True, credit=0)
    organization = OrganizationFactory(status="pending")
    organization_approve(organization=organization, actor=staff)
    host = HostFactory(organization=organization, approved=False)
    host_reject(host=host, reason="Inventory does not match", actor=staff)
    credit_note_issue(user=buyer, amount=Decimal("5.00"), reason="Outage", staff=staff)

    entries = {e.action: e for e in AuditEntry.objects.order_by("id")}  # the latest of each action
    approve = entries["organization.approved"]
    assert (approve.actor, approve.before, approve.after) == (staff, {"status": "pending"}, {"status": "approved"})
    assert entries["host.reject"].reason == "Inventory does not match"
    credit = entries["money.credit"]
    assert credit.actor == staff and credit.reason == "Credit note: Outage"
    assert [buyer_key for buyer_key, _ in credit.after["postings"]][1].startswith("buyer_wallet:")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database triggers are PostgreSQL's")
def test_the_database_refuses_to_rewrite_history():
    entry = AuditEntry.objects.create(action="test", object_type="x", object_id="1")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(reason="edited")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()


def test_only_staff_browse_the_audit_log(client, buyer):
    client.force_login(buyer)
    response = client.get(reverse("admin:marketplace_auditentry_changelist"))
    assert response.status_code == 302 and "login" in response["Location"]
