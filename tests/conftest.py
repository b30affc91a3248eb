import os

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.scopes import ALL_SCOPES, DEFAULT_SCOPES
from accounts.services import api_key_issue
from billing.selectors import ledger_total
from marketplace.celery import app as celery_app
from marketplace.services import catalog_sync

from .factories import HostFactory, OrganizationFactory, UserFactory


@pytest.fixture(scope="session", autouse=True)
def _services_required_in_ci():
    """In CI (REQUIRE_SERVICES=1) the suite must run on PostgreSQL and Redis, never fall back."""
    if os.environ.get("REQUIRE_SERVICES") != "1":
        return
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql", "CI must use PostgreSQL"
    assert settings.REDIS_URL, "CI must use Redis"
    assert redis.Redis.from_url(settings.REDIS_URL).ping(), "Redis must answer"


@pytest.fixture(autouse=True)
def _ledger_sums_to_zero(request, django_db_blocker):
    """After every database test, the whole ledger still sums to zero."""
    yield
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if uses_db:
        with django_db_blocker.unblock():
            assert ledger_total() == 0


@pytest.fixture(autouse=True)
def _no_walk_under_way():
    """Each test starts with no beat walk marked as under way (`marketplace.tasks.walk_step`): a walk a
    test left unfinished must not make another test's beat task skip."""
    cache.delete_many([f"walk:{name}" for name in celery_app.tasks])
    yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The catalog (accelerator models, instance types, regions) is reference data every test uses."""
    with django_db_blocker.unblock():
        catalog_sync()


@pytest.fixture
def catalog(transactional_db):
    """For transactional tests: the flush between tests empties the catalog, so reload it."""
    catalog_sync()


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def buyer(db):
    return UserFactory(email="buyer@example.com")


@pytest.fixture
def supplier_org(db):
    return OrganizationFactory(name="Alpha Compute", status="approved")


@pytest.fixture
def supplier(supplier_org):
    return supplier_org.memberships.get(role="owner").user


@pytest.fixture
def other_supplier_org(db):
    return OrganizationFactory(name="Bravo Compute", status="approved")


@pytest.fixture
def other_supplier(other_supplier_org):
    return other_supplier_org.memberships.get(role="owner").user


def bearer_client(user) -> APIClient:
    client = APIClient()
    scopes = ALL_SCOPES if user.is_staff else DEFAULT_SCOPES  # everything the account can do
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(user=user, name='test', scopes=scopes).key}")
    return client


@pytest.fixture
def supplier_client(supplier):
    return bearer_client(supplier)


@pytest.fixture
def other_supplier_client(other_supplier):
    return bearer_client(other_supplier)


@pytest.fixture
def approved_host(supplier_org):
    return HostFactory(organization=supplier_org, approved=True)
