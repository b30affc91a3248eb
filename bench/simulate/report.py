"""What a simulated run reports: exact sums in minutes and money, and the figures derived from them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class Report:
    scenario: str
    minutes: int
    fleet_accelerators: int
    # Exact sums in minutes (accelerator-minutes, TFLOP-minutes); hours are derived for reports.
    sold_accelerator_minutes: int = 0  # paid for (a reserved term whole, idle windows included)
    used_accelerator_minutes: int = 0  # running
    used_by_model: Counter = field(default_factory=Counter)  # accelerator-minutes running
    used_by_region: Counter = field(default_factory=Counter)
    accelerators_by_model: Counter = field(default_factory=Counter)
    accelerators_by_region: Counter = field(default_factory=Counter)
    placed: int = 0  # instances
    orders_served: int = 0
    turned_away: Counter = field(default_factory=Counter)
    eight_x_turned_away: int = 0
    charged: Decimal = Decimal(0)
    platform_take: Decimal = Decimal(0)
    resale_credit: Decimal = Decimal(0)  # spot revenue on idle reserved capacity, to the reserving buyers
    reserved_charged: Decimal = Decimal(0)
    tflop_minutes: Decimal = Decimal(0)
    capability_charged: Decimal = Decimal(0)
    capability_tflop_minutes: Decimal = Decimal(0)
    preemptions: int = 0
    preempted_minutes_lost: int = 0
    fragmentation_samples: list[float] = field(default_factory=list)
    utilization_samples: list[float] = field(default_factory=list)  # hourly: accelerators running / fleet

    @property
    def sold_accelerator_hours(self) -> Decimal:
        return Decimal(self.sold_accelerator_minutes) / 60

    @property
    def preempted_instance_hours_lost(self) -> Decimal:
        return Decimal(self.preempted_minutes_lost) / 60

    @property
    def used_accelerator_hours(self) -> Decimal:
        return Decimal(self.used_accelerator_minutes) / 60

    @property
    def utilization(self) -> float:
        """The share of the fleet's accelerator-minutes running an instance."""
        capacity_minutes = self.fleet_accelerators * self.minutes
        return self.used_accelerator_minutes / capacity_minutes if capacity_minutes else 0.0

    @property
    def idle_rate(self) -> float:
        return 1 - self.utilization

    @property
    def supplier_revenue(self) -> Decimal:
        return self.charged - self.platform_take - self.resale_credit

    @property
    def reserved_net_cost(self) -> Decimal:
        """What reserved buyers paid for their terms less what resale of their idle capacity earned them."""
        return self.reserved_charged - self.resale_credit

    @property
    def price_per_tflop_hour(self) -> Decimal | None:
        if not self.tflop_minutes:
            return None
        return (self.charged * 60 / self.tflop_minutes).quantize(Decimal("0.0001"))

    @property
    def capability_price_per_tflop_hour(self) -> Decimal | None:
        if not self.capability_tflop_minutes:
            return None
        return (self.capability_charged * 60 / self.capability_tflop_minutes).quantize(Decimal("0.0001"))

    @property
    def fragmentation(self) -> float:
        samples = self.fragmentation_samples
        return sum(samples) / len(samples) if samples else 0.0
