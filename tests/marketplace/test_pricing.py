from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.money import as_money, quantize_cents, quantize_price
from marketplace.pricing import HostEconomics, offer_figures


def h100_host(units=8, price="2.50", pue="1.25"):
    return HostEconomics(
        units=units,
        price_per_unit_hour=Decimal(price),
        host_power_watts=Decimal(700 * units),
        host_tflops=Decimal("989.0") * units,
        pue=Decimal(pue),
    )


def test_one_gpu_of_an_h100_host():
    figures = offer_figures(h100_host(), 1)
    assert figures.price_per_hour == Decimal("2.500000")
    assert figures.tflops == Decimal("989.00")
    assert figures.energy_kwh_per_hour == Decimal("0.8750")  # 700 W x 1.25 PUE
    assert figures.price_per_tflop_hour == quantize_price(Decimal("2.5") / Decimal("989"))


def test_whole_host_scales_every_figure():
    figures = offer_figures(h100_host(), 8)
    assert figures.price_per_hour == Decimal("20.000000")
    assert figures.energy_kwh_per_hour == Decimal("7.0000")


def test_money_is_never_a_float():
    with pytest.raises(TypeError):
        as_money(1.5)
    assert quantize_cents(Decimal("1.005")) == Decimal("1.01")


@given(st.integers(1, 64), st.decimals(min_value="0.000001", max_value="100", places=6), st.data())
def test_price_is_linear_in_claimed_units(units, price, data):
    claimed = data.draw(st.integers(1, units))
    host = HostEconomics(
        units=units,
        price_per_unit_hour=price,
        host_power_watts=Decimal(300 * units),
        host_tflops=Decimal(100 * units),
        pue=Decimal("1.5"),
    )
    figures = offer_figures(host, claimed)
    assert figures.price_per_hour == quantize_price(price * claimed)
    assert isinstance(figures.price_per_hour, Decimal)
