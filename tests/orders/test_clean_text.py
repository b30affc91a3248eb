"""Text is bounded and clean: what reaches the host agent (image, command) and what renters read
(maintenance reasons) has a length limit and no control characters but newline and tab."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.errors import InvalidInput
from orders.launch import MAX_COMMAND_LENGTH
from orders.requests import OrderRequest, order_target_resolve
from orders.supply import maintenance_schedule
from tests.factories import HostFactory, l4_host_data

pytestmark = pytest.mark.django_db


def resolve(**fields):
    fields.setdefault("instance_type", "l4-24g.1x")
    fields.setdefault("image", "pytorch/pytorch:2.5.1")
    return order_target_resolve(OrderRequest(**fields))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"image": "evil\x1b[2Jimage"}, "image"),
        ({"image": "pytorch/pytorch:2.5.1\x00"}, "image"),
        ({"command": "python train.py\x1b]0;owned\x07"}, "command"),
        ({"command": "x" * (MAX_COMMAND_LENGTH + 1)}, "command"),
    ],
)
def test_what_the_agent_runs_is_clean(catalog, fields, field):
    with pytest.raises(InvalidInput) as error:
        resolve(**fields)
    assert field in error.value.fields


def test_a_multiline_command_is_fine(catalog):
    resolve(command="set -e\n\tpython train.py --epochs 3")


@pytest.mark.parametrize("reason", ["Disks\x1b[31m", "x" * 501])
def test_maintenance_reasons_are_clean_and_bounded(supplier, supplier_org, reason):
    host = HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    start = timezone.now() + timedelta(days=1)
    with pytest.raises(InvalidInput) as error:
        maintenance_schedule(
            user=supplier, host=host, starts_at=start, ends_at=start + timedelta(hours=1), reason=reason
        )
    assert "reason" in error.value.fields
    assert not host.maintenance_windows.exists()
