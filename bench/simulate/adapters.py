"""Trace rows as the product's maths takes them: a fleet row as a `capacity.HostSpec` (as
`suppliers.offers.host_capacity_spec` reads a host), a catalog type as a `capacity.Shape`, a host's
economics for `pricing.offer_figures`, and what a capability request can be served by."""

from __future__ import annotations

from decimal import Decimal

from marketplace import capacity, catalog
from marketplace.pricing import HostEconomics

from .trace import Demand, FleetHost, _specs, capable_types, cheapest_capable_type

PUE = Decimal("1.2")
EQUAL_SLICES = 4


def host_spec(row: FleetHost, slicing: str) -> capacity.HostSpec:
    """The capacity maths' view of a fleet row (`suppliers.offers.host_capacity_spec` for a trace)."""
    cpu = row.kind == catalog.CPU
    amounts = {"vcpus": row.vcpus, "ram_gb": row.ram_gb, "disk_gb": row.disk_gb}
    if not cpu:
        amounts["accelerators"] = row.units
    policy = capacity.SlicingPolicy.FINE if cpu else capacity.SlicingPolicy(slicing)
    # Equal: four slices per server where it has four accelerators or more (the seed's 12-unit server
    # as 4 basic instances), else one per accelerator.
    slices = min(EQUAL_SLICES, row.units) if policy == capacity.SlicingPolicy.EQUAL else 1
    return capacity.HostSpec(
        capacity=capacity.Resources(amounts), policy=policy, primary="vcpus" if cpu else "accelerators", slices=slices
    )


def type_shape(spec: catalog.InstanceTypeSpec) -> capacity.Shape:
    """`suppliers.offers.instance_type_shape` for a catalog type."""
    amounts = {"vcpus": spec.vcpus, "ram_gb": spec.ram_gb, "disk_gb": spec.disk_gb}
    if spec.accelerator_count:
        amounts["accelerators"] = spec.accelerator_count
    return capacity.Shape(name=spec.name, resources=capacity.Resources(amounts))


def _economics(row: FleetHost, spec: capacity.HostSpec) -> HostEconomics:
    model = _specs()[row.accelerator]
    units = capacity.effective_capacity(spec)[spec.primary]
    price = row.price_per_unit_hour
    if row.kind == catalog.CPU:  # CPU hosts are priced per vCPU-hour
        price = (row.price_per_unit_hour * row.units / row.vcpus).quantize(Decimal("0.0001"))
    return HostEconomics(
        units=units,
        price_per_unit_hour=price,
        host_power_watts=Decimal(model.tdp_watts * row.units),
        host_tflops=model.bf16_tflops * row.units,
        pue=PUE,
    )


def _capable_types(demand: Demand) -> list[catalog.InstanceTypeSpec]:
    return capable_types(demand.min_memory_gb, demand.min_tflops)


def single_model_type(demand: Demand) -> str:
    """What a buyer who must name one model orders for a capability request: the type meeting it
    with the lowest reference price per hour."""
    return cheapest_capable_type(demand.min_memory_gb, demand.min_tflops).name
