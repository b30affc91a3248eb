"""The SDK and the `cm` command line against a live server: search with the query language,
quote, order, list and act on instances, SSH keys, API keys, hosts; --json, --explain; errors with
their codes and exit statuses; retries that keep one idempotency key; pagination followed."""

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from marketplace_client import ApiError, Client, load_config
from marketplace_client import client as client_module
from marketplace_client.cli import main

from accounts.models import TeamMembership
from accounts.roles import Role
from accounts.scopes import DEFAULT_SCOPES
from accounts.services import api_key_issue
from accounts.teams import team_create
from billing.ledger import credit_grant
from orders.models import Order
from tests.factories import HostFactory, UserFactory, l4_host_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def market(catalog, supplier_org):
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


@pytest.fixture
def cm(live_server, monkeypatch, capsys):
    buyer = UserFactory(email="cli@example.com")
    key = api_key_issue(user=buyer, name="cli", scopes=DEFAULT_SCOPES).key
    monkeypatch.setenv("MARKETPLACE_URL", live_server.url)
    monkeypatch.setenv("MARKETPLACE_API_KEY", key)
    monkeypatch.setenv("MARKETPLACE_CONFIG", "")

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    run.buyer = buyer
    run.key = key
    return run


def test_search_order_and_manage_an_instance_from_the_command_line(market, cm):
    status, out, err = cm("--explain", "offers", "search", "accelerator_model in [l4-24g,h100-80g] num_accelerators>=2")
    assert status == 0, err
    assert "l4-24g.2x" in out and "l4-24g.1x" not in out
    assert "-> GET" in err and "accelerator_model__in=l4-24g%2Ch100-80g" in err and "<- 200" in err

    status, out, err = cm("--json", "quote", "--type", "l4-24g.1x", "--count", "2")
    assert status == 0, err
    assert json.loads(out)["count"] == 2

    status, out, err = cm(
        "order", "--type", "l4-24g.1x", "--image", "pytorch/pytorch:2.5.1", "--idempotency-key", "k-1"
    )
    assert status == 0, err
    order = Order.objects.get(buyer=cm.buyer)
    instance = order.instances.get()
    assert f"order {order.pk}" in out and f"instance {instance.pk}" in out
    # The same idempotency key again: the same order, not a second one.
    again = cm("order", "--type", "l4-24g.1x", "--image", "pytorch/pytorch:2.5.1", "--idempotency-key", "k-1")
    assert again[0] == 0
    assert Order.objects.filter(buyer=cm.buyer).count() == 1

    status, out, _ = cm("instances", "list")
    assert status == 0 and str(instance.pk) in out and "l4-24g.1x" in out
    status, out, _ = cm("instances", "wait", str(instance.pk), "--status", instance.status)
    assert status == 0 and instance.status in out
    status, _, err = cm(
        "instances", "wait", str(instance.pk), "--status", "stopped", "--timeout", "0.2", "--poll", "0.1"
    )
    assert status == 1 and "after" in err
    assert cm("instances", "logs", str(instance.pk))[1].strip() == "(no output yet)"
    assert json.loads(cm("--json", "instances", "show", str(instance.pk))[1])["id"] == instance.pk
    balance = json.loads(cm("--json", "billing", "balance")[1])
    assert balance["currency"] == "USD" and float(balance["burn_per_hour"]) > 0  # the order's instance burns
    assert cm("templates", "list")[0] == 0
    status, out, err = cm("instances", "terminate", str(instance.pk))
    assert status == 0, err
    instance.refresh_from_db()
    assert instance.status in ("terminating", "terminated")


def test_errors_print_the_api_code_and_exit_1_and_bad_queries_exit_2(market, cm):
    status, _, err = cm("offers", "search", "gpu_brand=nvidia")
    assert status == 2 and "Unknown field 'gpu_brand'" in err
    status, _, err = cm("instances", "show", "999999")
    assert status == 1 and "error: not_found" in err
    status, _, err = cm("--key", "cmk_wrong_wrong", "instances", "list")
    assert status == 1 and "api_key_invalid" in err
    status, _, err = cm("order", "--type", "l4-24g.1x", "--count", "50", "--image", "x")
    assert status == 1 and "insufficient_capacity" in err


def test_ssh_keys_api_keys_and_hosts(market, cm, tmp_path, supplier):
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (tmp_path / "id.pub").write_text(f"{line} me@laptop\n")
    status, out, err = cm("ssh-keys", "add", str(tmp_path / "id.pub"))
    assert status == 0 and "SHA256:" in out, err
    assert "me@laptop" in cm("ssh-keys", "list")[1]

    status, out, err = cm(
        "keys", "create", "--email", "cli@example.com", "--password", "demo12345", "--name", "ro", "--scope", "read"
    )
    assert status == 0 and "(read)" in out, err
    read_only = out.split(": ")[1].split()[0]
    status, _, err = cm("--key", read_only, "order", "--type", "l4-24g.1x", "--image", "x")
    assert status == 1 and "insufficient_scope" in err
    status, out, _ = cm("--json", "keys", "list")
    assert sorted(k["name"] for k in json.loads(out)) == ["cli", "ro"]

    supplier_key = api_key_issue(user=supplier, name="s", scopes=DEFAULT_SCOPES).key
    status, out, err = cm("--key", supplier_key, "hosts", "list")
    assert status == 0 and "l4-a" in out, err
    status, out, err = cm("--key", supplier_key, "--json", "hosts", "token", str(market.pk))
    assert status == 0 and "token" in json.loads(out), err


def test_the_sdk_follows_pages_and_reads_its_configuration(market, live_server, tmp_path, monkeypatch):
    client = Client(live_server.url)
    offers = client.offers({"page_size": "1", "verified": "all"}, limit=3)
    assert len(offers) == 3 and len({o["id"] for o in offers}) == 3
    file = tmp_path / "config.toml"
    file.write_text('url = "https://market.example.com"\napi_key = "cmk_from_file"\n')
    monkeypatch.delenv("MARKETPLACE_URL", raising=False)
    monkeypatch.delenv("MARKETPLACE_API_KEY", raising=False)
    assert load_config(path=str(file)).api_key == "cmk_from_file"
    monkeypatch.setenv("MARKETPLACE_API_KEY", "cmk_from_env")
    config = load_config(path=str(file))
    assert (config.url, config.api_key) == ("https://market.example.com", "cmk_from_env")
    assert load_config(api_key="cmk_flag", path=str(file)).api_key == "cmk_flag"


def test_retries_honour_retry_after_and_keep_one_idempotency_key():
    seen: list[tuple[str, str | None]] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.headers.get("Idempotency-Key")))
            if len(seen) < 3:
                self.send_response(429 if len(seen) == 1 else 503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            body = json.dumps({"id": 1, "instances": []}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        lines: list[str] = []
        client = Client(f"http://127.0.0.1:{server.server_port}", "cmk_x", backoff=0, explain=lines.append)
        assert client.order(instance_type="l4-24g.1x") == {"id": 1, "instances": []}
    finally:
        server.shutdown()
    assert [path for path, _ in seen] == ["/api/v1/orders/"] * 3
    keys = {key for _, key in seen}
    assert len(keys) == 1 and None not in keys
    assert [line.split()[1] for line in lines if line.startswith("<-")] == ["429", "503", "201"]


def test_ssh_is_built_from_the_port_and_address_never_from_a_server_command_line(monkeypatch):
    client = Client("http://unused")
    connection = {"kind": "ssh", "host_port": 40022, "address": "203.0.113.5", "command": "ssh; rm -rf ~"}
    monkeypatch.setattr(client, "instance", lambda _id: {"connections": [connection]})
    assert client.ssh_argv(7) == ["ssh", "-p", "40022", "root@203.0.113.5"]
    connection["address"] = "-oProxyCommand=touch /tmp/x"
    with pytest.raises(ApiError, match="Refusing"):
        client.ssh_argv(7)
    monkeypatch.setattr(client, "instance", lambda _id: {"connections": []})
    with pytest.raises(ApiError, match="no SSH port"):
        client.ssh_argv(7)


def test_writes_without_an_idempotency_key_are_not_repeated_and_links_elsewhere_are_not_followed():
    seen: list[str] = []

    class Down(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.path)
            self.send_response(502)
            self.end_headers()

        def do_GET(self):
            seen.append(self.path)
            body = json.dumps({"results": [{"id": 1}], "next": "https://elsewhere.example.com/steal"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lines: list[str] = []
    client = Client(f"http://127.0.0.1:{server.server_port}", "cmk_x", backoff=0, explain=lines.append)
    try:
        with pytest.raises(ApiError) as error:  # a token issued twice would leave a live one unknown
            client.host_token(1)
        assert error.value.status == 502 and seen == ["/api/v1/hosts/1/registration-token/"]
        with pytest.raises(ApiError, match="away from"):
            client.hosts()
        with pytest.raises(ApiError):
            client.key_create(email="a@example.com", password="hunter2", name="x")
    finally:
        server.shutdown()
    assert not any("hunter2" in line for line in lines) and any("***" in line for line in lines)


def test_links_to_the_same_origin_are_followed_whatever_their_spelling():
    client = Client("https://market.example.com")
    assert client_module._origin("HTTPS://Market.Example.com:443/api/v1/offers/?cursor=x") == client_module._origin(
        client.base_url
    )
    assert client_module._origin("https://market.example.com:8443/") != client_module._origin(client.base_url)


def test_a_repeated_delete_that_finds_nothing_left_counts_as_done():
    answers = [502, 404]

    class Flaky(BaseHTTPRequestHandler):
        def do_DELETE(self):
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Client(f"http://127.0.0.1:{server.server_port}", "cmk_x", backoff=0).ssh_key_delete(3)
    finally:
        server.shutdown()
    assert answers == []


def test_the_command_line_acts_for_a_team_as_the_role_allows(market, cm):
    team = team_create(owner=UserFactory(email="lead@example.com"), name="Vision lab")
    TeamMembership.objects.create(team=team, user=cm.buyer, role=Role.MEMBER)
    status, out, err = cm("--team", str(team.pk), "order", "--type", "l4-24g.1x", "--image", "ubuntu:24.04")
    assert status == 1 and "insufficient_funds" in err  # the team's wallet pays, not the member's
    credit_grant(user=team.account, amount=Decimal("50"), reason="Team credit", key="team-credit")
    status, out, err = cm("teams", "list")
    assert status == 0, err
    assert "Vision lab" in out and "member" in out
    status, out, err = cm("--team", str(team.pk), "order", "--type", "l4-24g.1x", "--image", "pytorch/pytorch:2.5.1")
    assert status == 0, err
    assert Order.objects.get().buyer == team.account
    status, out, err = cm("--team", str(team.pk), "billing", "balance")
    assert status == 1
    assert "role_forbids" in err
