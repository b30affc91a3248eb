"""The agent's HTTP client against a local HTTP server: retries, backoff, and refusals."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.client import PlatformClient, PlatformError, printable


class FlakyPlatform(BaseHTTPRequestHandler):
    """Answers 503 for the first `failures` calls (a platform restarting), then 200."""

    failures = 0
    calls: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append((self.path, self.headers.get("Authorization"), body))
        if self.path.endswith("refuse/"):
            self._reply(400, {"code": "invalid", "detail": "no"})
        elif len(type(self).calls) <= type(self).failures:
            self._reply(503, {"code": "unavailable"})
        else:
            self._reply(200, {"commands": []})

    def _reply(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def platform():
    FlakyPlatform.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyPlatform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_retries_a_restarting_platform_with_backoff(platform):
    FlakyPlatform.failures = 3
    waits = []
    client = PlatformClient(platform, "hcr_secret", sleep=waits.append)
    assert client.post("heartbeat/", {"instances": []}) == {"commands": []}
    assert len(FlakyPlatform.calls) == 4
    assert FlakyPlatform.calls[0][:2] == ("/api/v1/agent/heartbeat/", "Bearer hcr_secret")
    assert len(waits) == 3 and waits[0] < waits[2]  # exponential backoff (with jitter)


def test_refusals_are_not_retried(platform):
    FlakyPlatform.failures = 0
    client = PlatformClient(platform, "x", sleep=lambda s: None)
    with pytest.raises(PlatformError) as error:
        client.post("refuse/")
    assert error.value.status == 400 and len(FlakyPlatform.calls) == 1


def test_gives_up_on_a_platform_that_is_down():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    client = PlatformClient(f"http://127.0.0.1:{port}", "x", max_attempts=3, sleep=lambda s: None)
    with pytest.raises(ConnectionError, match="after 3 attempts"):
        client.post("heartbeat/")


def test_payload_text_is_made_printable_before_it_is_sent():
    body = {"detail": "Start failed: \x1b[31mno such image\x1b[0m\n\ttrace", "checks": [{"name": "gpu\x00"}]}
    assert printable(body) == {
        "detail": "Start failed: \ufffd[31mno such image\ufffd[0m\n\ttrace",
        "checks": [{"name": "gpu\ufffd"}],
    }
