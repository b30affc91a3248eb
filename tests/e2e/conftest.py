import pytest
from pytest_django.live_server_helper import LiveServer


@pytest.fixture
def live_server():
    """A live server per test, stopped right after it, so no browser keep-alive connection holds
    a database connection when the test database is dropped."""
    server = LiveServer("localhost")
    yield server
    server.stop()
