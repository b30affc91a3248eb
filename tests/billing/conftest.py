# The running-instance fixtures are shared with the orders tests (metering and enforcement live there).
from tests.orders.conftest import at, l4_host, poor_buyer, running

__all__ = ["at", "l4_host", "poor_buyer", "running"]
