"""SSH keys: account-level public keys parsed by `cryptography`'s SSH loader (fingerprints as
`ssh-keygen` prints them), managed in the API and the browser, and installed into the instances an
order names — never another user's."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.urls import reverse

from accounts.models import SshKey
from orders.models import HostCommand, Instance
from tests.conftest import bearer_client
from tests.factories import UserFactory
from tests.orders.conftest import l4_host  # noqa: F401 - the host the orders go to

pytestmark = pytest.mark.django_db
IMAGE = "ubuntu:24.04"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


def public_line(key, comment: str = "me@laptop") -> str:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}".strip()


def ed25519_line(comment: str = "me@laptop") -> str:
    return public_line(ed25519.Ed25519PrivateKey.generate(), comment)


def add(client, public_key: str, name: str = ""):
    return client.post("/api/v1/ssh-keys/", {"name": name, "public_key": public_key}, format="json")


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP256R1()),
    ],
    ids=["ed25519", "rsa-2048", "ecdsa-p256"],
)
def test_a_public_key_is_added_with_the_fingerprint_ssh_keygen_prints(buyer, key, tmp_path):
    line = public_line(key)
    response = add(bearer_client(buyer), line, name="laptop")
    assert response.status_code == 201, response.content
    body = response.json()
    path = tmp_path / "key.pub"
    path.write_text(line + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    assert body["fingerprint"] == printed.split()[1]
    assert body["public_key"] == line and body["name"] == "laptop"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "blank"),
        ("ssh-ed25519 not-base64!!", "Not an OpenSSH public key"),
        ("hello world", "Not an OpenSSH public key"),
        (public_line(rsa.generate_private_key(65537, 1024)), "at least 2048 bits"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
            "private key",
        ),
        (ed25519_line() + "\n" + ed25519_line(), "several lines"),
        ('command="rm -rf /" ' + ed25519_line(), "Not an OpenSSH public key"),
    ],
)
def test_what_is_not_a_public_key_is_a_400_naming_the_problem(buyer, text, says):
    response = add(bearer_client(buyer), text)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] in ("invalid_ssh_key", "invalid") and says in str(body)
    assert not SshKey.objects.exists()


def test_a_comment_that_is_not_plain_text_does_not_reach_authorized_keys(buyer):
    line = ed25519_line(comment="admin\u200b@bank")  # a zero-width space: not printable
    body = add(bearer_client(buyer), line, name="laptop").json()
    assert body["public_key"] == " ".join(line.split()[:2])


def test_the_same_key_twice_is_a_409_and_keys_are_the_owners_alone(buyer):
    line = ed25519_line()
    client = bearer_client(buyer)
    key_id = add(client, line).json()["id"]
    again = add(client, line)
    assert again.status_code == 409 and again.json()["code"] == "ssh_key_exists"
    other = bearer_client(UserFactory(email="other@example.com"))
    assert add(other, line).status_code == 201  # another account may hold the same public key
    assert other.get(f"/api/v1/ssh-keys/{key_id}/").status_code == 404
    assert other.delete(f"/api/v1/ssh-keys/{key_id}/").status_code == 404
    assert [k["id"] for k in client.get("/api/v1/ssh-keys/").json()["results"]] == [key_id]
    assert client.delete(f"/api/v1/ssh-keys/{key_id}/").status_code == 204
    assert not SshKey.objects.filter(pk=key_id).exists()


def test_an_order_installs_all_the_buyers_keys_by_default_or_the_ones_it_names(buyer, l4_host):  # noqa: F811
    client = bearer_client(buyer)
    first, second = ed25519_line("first"), ed25519_line("second")
    first_id = add(client, first).json()["id"]
    add(client, second)
    SshKey.objects.create(  # another user's key, never installed
        user=UserFactory(email="stranger@example.com"),
        name="x",
        key_type="ssh-ed25519",
        public_key=ed25519_line("stranger"),
        fingerprint="SHA256:stranger",
        bits=256,
    )

    everything = client.post("/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": IMAGE}, format="json")
    assert everything.status_code == 201, everything.content
    instance = Instance.objects.get(pk=everything.json()["instances"][0]["id"])
    assert instance.authorized_keys == f"{first}\n{second}\n"
    start = HostCommand.objects.get(instance=instance, kind="start")
    assert start.payload["authorized_keys"] == instance.authorized_keys

    chosen = client.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": IMAGE, "ssh_keys": [first_id]}, format="json"
    )
    assert Instance.objects.get(pk=chosen.json()["instances"][0]["id"]).authorized_keys == f"{first}\n"
    none = client.post("/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": IMAGE, "ssh_keys": []}, format="json")
    assert Instance.objects.get(pk=none.json()["instances"][0]["id"]).authorized_keys == ""


def test_an_order_naming_another_users_key_is_refused_whole(buyer, l4_host):  # noqa: F811
    theirs = SshKey.objects.create(
        user=UserFactory(email="stranger@example.com"),
        name="x",
        key_type="ssh-ed25519",
        public_key=ed25519_line("stranger"),
        fingerprint="SHA256:stranger",
        bits=256,
    )
    before = Instance.objects.count()
    response = bearer_client(buyer).post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": IMAGE, "ssh_keys": [theirs.pk]}, format="json"
    )
    assert response.status_code == 400 and response.json()["fields"] == {
        "ssh_keys": [f"Not one of your keys: {theirs.pk}."]
    }
    assert Instance.objects.count() == before


def test_the_page_adds_lists_and_deletes_keys_with_field_errors(client, buyer):
    client.force_login(buyer)
    bad = client.post(reverse("accounts:ssh_keys"), {"name": "", "public_key": "not a key"})
    assert bad.status_code == 200 and "Not an OpenSSH public key" in bad.content.decode()
    line = ed25519_line("desk")
    added = client.post(reverse("accounts:ssh_keys"), {"name": "", "public_key": line}, follow=True)
    key = SshKey.objects.get(user=buyer)
    assert key.name == "desk" and key.fingerprint in added.content.decode()
    stranger = UserFactory(email="stranger@example.com")
    client.force_login(stranger)
    assert client.post(reverse("accounts:ssh_key_delete", args=[key.pk])).status_code == 404
    client.force_login(buyer)
    client.post(reverse("accounts:ssh_key_delete", args=[key.pk]))
    assert not SshKey.objects.exists()


def test_a_key_without_a_name_takes_its_comment(buyer):
    """Found by the fuzzer: leaving `name` out was a 500."""
    response = bearer_client(buyer).post("/api/v1/ssh-keys/", {"public_key": ed25519_line("ci@runner")}, format="json")
    assert response.status_code == 201 and response.json()["name"] == "ci@runner"


def test_the_rent_form_and_the_instance_say_which_keys_go_in(client, buyer, l4_host):  # noqa: F811
    line = ed25519_line("desk")
    api = bearer_client(buyer)
    add(api, line)
    client.force_login(buyer)
    offer = l4_host.offers.get(instance_type__name="l4-24g.1x")
    assert "Your 1 SSH key will be installed" in client.get(reverse("offer_detail", args=[offer.pk])).content.decode()
    placed = api.post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json").json()
    instance_id = placed["instances"][0]["id"]
    assert api.get(f"/api/v1/instances/{instance_id}/").json()["authorized_keys"] == f"{line}\n"
    page = client.get(reverse("orders:instance_detail", args=[instance_id])).content.decode()
    assert "1 installed as <code>authorized_keys</code>" in page
