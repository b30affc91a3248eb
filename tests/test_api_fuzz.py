"""Schema-driven fuzzing: schemathesis generates requests for every operation of the OpenAPI schema
(`/api/schema/`, loaded through the WSGI app: no server) and runs all its checks on each answer: no
5xx, every status documented, every body and header as the schema says, invalid input refused,
valid input accepted, auth not ignored.

Three runs over the same data (an approved supplier with a listed host, a buyer with credit and a
running instance on it): as the buyer and as the supplier (Bearer API keys) over the user API, and
as the host's agent (its host credential) over `/api/v1/agent/`. The Stripe webhook is not part of
the API schema (it is signed by Stripe, see tests/billing/test_stripe.py).

`API_FUZZ_EXAMPLES` sets the number of generated examples per operation (default 25).
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.services import api_key_issue
from suppliers.agent_services import agent_register, host_registration_token_issue
from tests.billing import test_stripe
from tests.conftest import bearer_client
from tests.orders import conftest as orders_conftest

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))
AGENT_PATHS = r"^/api/v1/agent/"

# Input that is valid by the schema and that the API still refuses, for reasons OpenAPI 3.0 cannot
# express; only `positive_data_acceptance` is skipped there. Every other check (negative data
# rejected included: JSON types are strict, see marketplace/api/json_types.py) runs everywhere.
# - UNKNOWN_REFERENCES: a well-formed slug or id naming no row (region "0", instance type "0",
#   `?accelerator_model=x`) is a 400; the catalog's slugs are data, not schema.
# - KEY_FORMAT: an SSH public key is a base64 blob whose content the parser checks (type, size,
#   curve); the schema can only say "a string".
# - DECIMAL_BOUNDS: a DecimalField's min/max is not in the schema (decimals are patterned strings).
# - URL_FORMAT: Django's URLValidator refuses some URLs that JSON Schema's `uri` format allows.
# - CURSOR (every list paged by cursor): a cursor is valid only as the list gave it out in a
#   `next`/`previous` link; any other string is a 400 naming `cursor`.
# - CONTROL_CHARACTER_KEYS (every operation with a body): unknown body keys are ignored, but one
#   with a control character is a 400 (`marketplace.api.parsers`); OpenAPI 3.0 has no
#   `propertyNames` to say so.
UNKNOWN_REFERENCES = KEY_FORMAT = DECIMAL_BOUNDS = URL_FORMAT = CONTROL_CHARACTER_KEYS = CURSOR = [
    positive_data_acceptance
]
KNOWN_GAPS = {
    "POST /api/v1/organization/": URL_FORMAT,
    "PATCH /api/v1/organization/": URL_FORMAT,
    "POST /api/v1/hosts/": UNKNOWN_REFERENCES,
    "POST /api/v1/orders/": UNKNOWN_REFERENCES,
    "POST /api/v1/quotes/": UNKNOWN_REFERENCES,
    "GET /api/v1/offers/": UNKNOWN_REFERENCES,
    "GET /api/v1/instance-types/": UNKNOWN_REFERENCES,
    "POST /api/v1/billing/top-ups/": DECIMAL_BOUNDS,
    "POST /api/v1/ssh-keys/": KEY_FORMAT,
}

# Fixtures shared with the orders tests (an L4 host of `supplier_org`, a running instance on it) and
# the billing tests (a local fake of the Stripe API, so top-ups reach a payment provider).
l4_host = orders_conftest.l4_host
running = orders_conftest.running
stripe_api = test_stripe.stripe_api


# The schema as the app serves it, fetched through its WSGI handler once, at collection.
# The recorded examples (marketplace/api/examples.json) document the API; the fuzzer derives its
# cases from the schema alone, as before they existed (mutating an example's values would be a
# different test).
WSGI_APP = get_wsgi_application()


def _without_examples(value):
    if isinstance(value, dict):
        return {k: _without_examples(v) for k, v in value.items() if k != "examples"}
    if isinstance(value, list):
        return [_without_examples(v) for v in value]
    return value


schema = schemathesis.openapi.from_dict(
    _without_examples(json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content))
)
schema.app = WSGI_APP
schema.location = "/api/schema/"
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Requests go through the real WSGI handler, whose request signals close database connections
    that are inside a transaction, i.e. the test's. Django's test client unhooks them the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(params=["buyer", "supplier"])
def user_authorization(request, buyer, supplier, running, stripe_api) -> str:
    """A Bearer API key of the buyer (with credit and a running instance) or of the supplier (an
    approved organization whose host runs that instance)."""
    user = buyer if request.param == "buyer" else supplier
    return f"Bearer {api_key_issue(user=user, name='fuzz').key}"


@pytest.fixture
def agent_authorization(supplier, l4_host, running) -> str:
    """The host credential of the host running the buyer's instance."""
    _, secret = agent_register(token=host_registration_token_issue(host=l4_host, user=supplier))
    return f"Bearer {secret}"


@schema.exclude(path_regex=AGENT_PATHS).parametrize()
@FUZZ_SETTINGS
def test_user_api_conforms_to_its_schema(case, user_authorization):
    case.call_and_validate(headers={"Authorization": user_authorization}, excluded_checks=known_gaps(case))


@schema.include(path_regex=AGENT_PATHS).parametrize()
@FUZZ_SETTINGS
def test_agent_api_conforms_to_its_schema(case, agent_authorization):
    case.call_and_validate(headers={"Authorization": agent_authorization}, excluded_checks=known_gaps(case))


def known_gaps(case) -> list:
    gaps = list(KNOWN_GAPS.get(f"{case.operation.method.upper()} {case.operation.path}", []))
    if case.operation.method.upper() in {"POST", "PUT", "PATCH"}:
        gaps += CONTROL_CHARACTER_KEYS
    if any(parameter.name == "cursor" for parameter in case.operation.query):
        gaps += CURSOR
    return gaps


def test_an_empty_patch_of_me_changes_nothing(buyer):
    """Found by the fuzzer: PATCH /me/ is partial, as its schema says; `{}` was a 400."""
    client = bearer_client(buyer)
    assert client.patch("/api/v1/me/", {"spend_limit_per_hour": "7.50"}, format="json").status_code == 200
    response = client.patch("/api/v1/me/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["spend_limit_per_hour"] == "7.50"
