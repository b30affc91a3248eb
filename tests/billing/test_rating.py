from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.rating import charge_for, split, storage_rate_per_hour


def test_charge_is_per_second_and_rounded_once():
    assert charge_for(3600, Decimal("2.49")) == Decimal("2.490000")
    assert charge_for(1, Decimal("2.49")) == Decimal("0.000692")  # 0.00069166... half up
    assert charge_for(0, Decimal("2.49")) == 0


def test_fee_rounded_supplier_gets_the_rest():
    parts = split(Decimal("0.000692"), Decimal("0.15"))
    assert (parts.fee, parts.supplier_share) == (Decimal("0.000104"), Decimal("0.000588"))


def test_storage_rate_pro_rates_the_month():
    assert storage_rate_per_hour(500, Decimal("0.073")) == Decimal("0.050000")  # 500 x 0.073 / 730


def test_refuses_nonsense():
    with pytest.raises(ValueError):
        charge_for(-1, Decimal(1))
    with pytest.raises(ValueError):
        split(Decimal(1), Decimal("1.5"))


@given(
    st.integers(0, 10**7),
    st.decimals(min_value="0", max_value="1000", places=6),
    st.decimals(min_value="0", max_value="1", places=4),
)
def test_charge_equals_supplier_share_plus_fee_exactly(seconds, rate, take):
    parts = split(charge_for(seconds, rate), take)
    assert parts.charge == parts.supplier_share + parts.fee
    assert parts.fee >= 0 and parts.supplier_share >= 0
    assert parts.charge.as_tuple().exponent >= -6


@given(st.lists(st.integers(1, 600), min_size=1, max_size=50), st.decimals(min_value="0.01", max_value="50", places=2))
def test_splitting_time_into_windows_loses_at_most_rounding(windows, rate):
    whole = charge_for(sum(windows), rate)
    parts = sum((charge_for(w, rate) for w in windows), Decimal(0))
    assert abs(whole - parts) <= Decimal("0.0000005") * len(windows) + Decimal("0.0000005")
