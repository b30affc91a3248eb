"""The rent form's template, ports, environment and disk; the instance page's connection details
with copy buttons, environment without secret values, and the live output tail."""

import pytest
from django.urls import reverse

from marketplace.models import Offer
from orders.logs import agent_ship_log
from orders.models import Instance, LaunchTemplate
from tests.factories import HostFactory, UserFactory, l4_host_data

pytestmark = pytest.mark.django_db

RENT = {"count": 1, "pricing": "on_demand", "image": "", "command": "", "max_price_per_hour": "", "term_hours": ""}


@pytest.fixture
def offer(supplier_org):
    host = HostFactory(
        organization=supplier_org,
        name="l4-in",
        **l4_host_data(public_address="203.0.113.5", port_range_start=40000, port_range_end=40009),
    )
    return Offer.objects.get(host=host, instance_type__name="l4-24g.1x")


@pytest.fixture
def jupyter(db):
    return LaunchTemplate.objects.create(
        name="jupyter", title="PyTorch + JupyterLab", image="pytorch/pytorch:2.5.1", ports=[22, 8888], disk_gb=600
    )


def test_rent_with_a_template_secret_and_disk_then_connect(client, buyer, offer, jupyter, settings):
    settings.LOG_SHIP_MIN_INTERVAL_SECONDS = 0
    client.force_login(buyer)
    page = client.get(reverse("offer_detail", args=[offer.pk])).content.decode()
    assert "PyTorch + JupyterLab (jupyter)" in page and 'name="secret_environment"' in page
    form = {**RENT, "template": "jupyter", "environment": "MODEL=llama", "secret_environment": "HF_TOKEN=hf_s3cr3t"}
    quote = client.post(reverse("orders:offer_quote", args=[offer.pk]), form).content.decode()
    assert "with 600 GB disk" in quote
    response = client.post(reverse("orders:offer_rent", args=[offer.pk]), form)
    assert response.status_code == 302, response.content.decode()
    instance = Instance.objects.get(buyer=buyer)

    detail = client.get(reverse("orders:instance_detail", args=[instance.pk])).content.decode()
    assert "ssh -p 40000 root@203.0.113.5" in detail and 'href="http://203.0.113.5:40001/"' in detail
    assert detail.count('class="secondary copy"') == 2
    assert "HF_TOKEN=••• (secret)" in detail and "hf_s3cr3t" not in detail and "MODEL=llama" in detail
    assert "600 GB" in detail

    assert "No output yet" in client.get(reverse("orders:instance_logs", args=[instance.pk])).content.decode()
    agent_ship_log(host=instance.host, instance_id=instance.pk, text="<b>jupyter</b> listening\n")
    tail = client.get(reverse("orders:instance_logs", args=[instance.pk])).content.decode()
    assert "&lt;b&gt;jupyter&lt;/b&gt; listening" in tail  # escaped, never markup
    client.force_login(UserFactory(email="other@example.com"))
    assert client.get(reverse("orders:instance_logs", args=[instance.pk])).status_code == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ports": "22, ssh"}, "Port numbers separated by commas"),
        ({"environment": "NO_EQUALS_SIGN"}, "Line 1: NAME=value."),
        ({"environment": "1BAD=x"}, "names are letters, digits and _"),
        ({"template": "nope"}, "Select a valid choice"),
        ({"image": ""}, "A container image reference"),
    ],
)
def test_rent_form_shows_what_is_wrong(client, buyer, offer, fields, message):
    client.force_login(buyer)
    response = client.post(reverse("orders:offer_rent", args=[offer.pk]), {**RENT, **fields})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Instance.objects.exists()


def test_templates_page_adds_lists_and_deletes_the_buyer_s_own(client, buyer, jupyter):
    client.force_login(buyer)
    page = client.get(reverse("orders:templates")).content.decode()
    assert "jupyter" in page and "curated" in page
    bad = client.post(reverse("orders:templates"), {"name": "Not A Slug", "image": "", "ports": "x"})
    body = bad.content.decode()
    assert bad.status_code == 200 and "Port numbers separated by commas" in body and "valid “slug”" in body
    saved = client.post(
        reverse("orders:templates"),
        {"name": "my-api", "title": "My API", "image": "python:3.12", "ports": "8000", "environment": "A=1"},
    )
    assert saved.status_code == 302
    assert "my-api" in client.get(saved["Location"]).content.decode()  # listed (and the notice read)
    mine = LaunchTemplate.objects.get(owner=buyer, name="my-api")
    assert mine.ports == [8000] and mine.environment == [{"name": "A", "value": "1"}]
    client.force_login(UserFactory(email="other@example.com"))
    assert "my-api" not in client.get(reverse("orders:templates")).content.decode()
    assert client.post(reverse("orders:template_delete", args=[mine.pk])).status_code == 404
    client.force_login(buyer)
    assert client.post(reverse("orders:template_delete", args=[mine.pk])).status_code == 302
    assert not LaunchTemplate.objects.filter(pk=mine.pk).exists()
