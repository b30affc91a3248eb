"""The platform serves its host agent: one file (a zipapp) and an install script that checks the
file's SHA-256, registers the host with a one-time token and runs the self-test. Run here for real
against a live server, with the script's own curl."""

import hashlib
import subprocess
import sys
import urllib.request

import pytest

from suppliers.agent_services import host_registration_token_issue
from suppliers.models import HostCredential
from tests.factories import HostFactory, l4_host_data

pytestmark = pytest.mark.django_db(transaction=True)


def fetch(url: str) -> tuple[bytes, dict]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), dict(response.headers)


def test_the_served_agent_is_one_runnable_file_with_its_hash(live_server, tmp_path):
    content, headers = fetch(f"{live_server.url}/agent/agent.pyz")
    assert headers["X-Content-SHA256"] == hashlib.sha256(content).hexdigest()
    (tmp_path / "agent.pyz").write_bytes(content)
    done = subprocess.run([sys.executable, str(tmp_path / "agent.pyz"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "register" in done.stdout and "selftest" in done.stdout
    again, _ = fetch(f"{live_server.url}/agent/agent.pyz")
    assert again == content  # the same code gives the same bytes


def run_installer(live_server, tmp_path, token: str, *, script: str | None = None) -> subprocess.CompletedProcess:
    script = script or fetch(f"{live_server.url}/agent/install.sh")[0].decode()
    (tmp_path / "install.sh").write_text(script)
    prefix = tmp_path / "opt"
    return subprocess.run(
        [
            "sh",
            str(tmp_path / "install.sh"),
            "--token",
            token,
            "--prefix",
            str(prefix),
            "--no-service",
            "--runtime",
            "process",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_one_line_install_registers_the_host(catalog, live_server, tmp_path, supplier_org, supplier):
    host = HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    script, headers = fetch(f"{live_server.url}/agent/install.sh")
    assert headers["Content-Type"].startswith("text/x-shellscript")
    sha = hashlib.sha256(fetch(f"{live_server.url}/agent/agent.pyz")[0]).hexdigest()
    assert f'SHA256="{sha}"' in script.decode() and f'PLATFORM="{live_server.url}"' in script.decode()
    done = run_installer(live_server, tmp_path, host_registration_token_issue(host=host, user=supplier))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "opt" / "agent.pyz").is_file()
    assert HostCredential.objects.filter(host=host).count() == 1
    assert "Run it with:" in done.stdout


def test_an_agent_that_does_not_match_its_hash_is_not_installed(catalog, live_server, tmp_path, supplier_org, supplier):
    host = HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    script = fetch(f"{live_server.url}/agent/install.sh")[0].decode()
    tampered = "\n".join(
        'SHA256="' + "0" * 64 + '"' if line.startswith("SHA256=") else line for line in script.splitlines()
    )
    done = run_installer(
        live_server, tmp_path, host_registration_token_issue(host=host, user=supplier), script=tampered
    )
    assert done.returncode == 1 and "does not match its published SHA-256" in done.stderr
    assert not (tmp_path / "opt" / "agent.pyz").exists()
    assert not HostCredential.objects.filter(host=host).exists()


def test_the_registration_page_gives_the_one_line_install(catalog, client, supplier_org, supplier):
    host = HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    client.force_login(supplier)
    page = client.post(f"/supplier/hosts/{host.pk}/registration-token/").content.decode()
    assert "curl -fsSL http://testserver/agent/install.sh | sudo sh -s -- --token hrt_" in page.replace("\n", " ")
