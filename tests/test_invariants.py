"""The money and capacity invariants, checked after every step of random runs of the real services.

A Hypothesis state machine drives a small market (two hosts, three buyers) through top-ups and their
Stripe events (duplicated and out of order), orders of every pricing, agent reports and heartbeats,
hosts going silent and coming back, buyer stops/starts/terminations, metering ticks, settlement
(re-run), low-balance enforcement, spot resumption, expiry, staff refunds and credit notes, and price
changes, over a moving clock. After every step:

- every ledger transaction balances and the ledger as a whole sums to zero;
- no instance-second is billed twice (an instance's usage windows never overlap, whatever their
  kind), and a settled usage record is settled by exactly its own transaction (`usage:<id>`);
- no host has more allocated than it has, in any dimension, and every listed offer's count is what
  the capacity maths says the host can still carry (allocated + free = total);
- no wallet is below the documented floor: what the buyer's disks can cost through the zero-balance
  grace plus one tick of compute per instance (top-ups reversed by Stripe are not modelled).

`INVARIANT_EXAMPLES` sets the number of runs (default 8, up to 40 steps each); for the long form:
`INVARIANT_EXAMPLES=2000 make test ARGS=tests/test_invariants.py`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Min
from freezegun import freeze_time
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test

from billing.adjustments import credit_note_issue, usage_refund
from billing.ledger import balance_mismatches
from billing.models import LedgerPosting, TopUp, UsageRecord
from billing.payments import stripe_event_handle
from billing.selectors import wallet_balance
from billing.settlement import settle_usage
from marketplace import capacity
from marketplace.errors import ApplicationError
from marketplace.models import Offer
from marketplace.walks import walk_to_end
from orders import agent, enforcement, lifecycle, spot
from orders.metering import disk_grace_cost, meter_usage
from orders.models import Instance, InstanceStatus
from orders.placement import order_place
from orders.requests import OrderRequest
from orders.supply import host_update
from suppliers.models import Host
from suppliers.offers import host_allocated_claims, host_capacity_spec, host_carriable_types, host_is_sellable
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

EXAMPLES = int(os.environ.get("INVARIANT_EXAMPLES", "8"))
TICK = timedelta(hours=1)  # the beat interval the runs use (the floor allows one tick of compute)
S = InstanceStatus
PRICE_B = Decimal("0.55")


class Market(RuleBasedStateMachine):
    instances = Bundle("instances")
    top_ups = Bundle("top_ups")

    def __init__(self):
        super().__init__()
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        self.clock = freeze_time(self.now)
        self.clock.start()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        organization = OrganizationFactory(name="Invariant Compute")
        self.hosts = [
            HostFactory(organization=organization, name="l4-a", **l4_host_data()),
            HostFactory(
                organization=organization, name="l4-b", **{**l4_host_data(), "price_per_unit_hour": Decimal("0.55")}
            ),
        ]
        self.buyers = [
            UserFactory(email=f"m{i}@example.com", credit=Decimal(c)) for i, c in enumerate(("3", "20", "0"))
        ]
        self.staff = UserFactory(email="staff@example.com", is_staff=True, credit=0)
        self.event_ids = itertools.count(1)
        self.heartbeat()

    def teardown(self):
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)
        self.clock.stop()

    # --- moving the clock and the beat ------------------------------------------------------------

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.clock.stop()
        self.clock = freeze_time(self.now)
        self.clock.start()

    def beat(self) -> None:
        meter_usage()
        settle_usage()
        walk_to_end(enforcement.low_balance_check, batch_size=2)
        walk_to_end(lifecycle.instances_expire, batch_size=2)
        walk_to_end(spot.spot_resume, batch_size=2)

    def heartbeat(self, host: Host | None = None) -> None:
        for h in [host] if host else self.hosts:
            running = Instance.objects.filter(host=h, status=S.RUNNING).values_list("pk", flat=True)
            agent.agent_heartbeat(host=h, instances=[{"id": pk, "status": "running", "usage": {}} for pk in running])

    @rule(minutes=st.sampled_from([1, 10, 60]), report=st.booleans())
    def tick(self, minutes, report):
        """Time passes: agents keep beating (or not), and the beat runs."""
        self.advance(timedelta(minutes=minutes))
        if report:
            self.heartbeat()
        self.beat()

    @rule(hours=st.integers(min_value=2, max_value=30))
    def long_quiet(self, hours):
        """Hours pass, one beat per tick, agents beating: long enough for runways to end and
        (with a one-day grace) for kept disks to be released."""
        for _ in range(hours):
            self.advance(TICK)
            self.heartbeat()
            self.beat()

    @rule(minutes=st.integers(min_value=2, max_value=200))
    def host_silence(self, minutes):
        """Agents stop beating; the platform marks their hosts offline (and, past the lost time, lost)."""
        self.advance(timedelta(minutes=minutes))
        walk_to_end(agent.hosts_mark_offline, batch_size=1)
        walk_to_end(agent.hosts_release_lost, batch_size=1)
        self.beat()

    @rule()
    def settle_again(self):
        settle_usage()

    # --- money in -------------------------------------------------------------------------------

    @rule(target=top_ups, buyer=st.integers(0, 2), dollars=st.sampled_from(["1.00", "5.00", "50.00"]))
    def top_up(self, buyer, dollars):
        return TopUp.objects.create(user=self.buyers[buyer], amount=Decimal(dollars)).pk

    @rule(top_up_id=top_ups, kind=st.sampled_from(["checkout", "intent"]), replay=st.booleans())
    def stripe_event(self, top_up_id, kind, replay):
        """Either event credits the top-up, once; a replayed event id changes nothing."""
        event_id = f"evt_{kind}_{top_up_id}" if replay else f"evt_{next(self.event_ids)}"
        if kind == "checkout":
            obj = {"id": f"cs_{top_up_id}", "payment_status": "paid", "metadata": {"top_up_id": str(top_up_id)}}
            event_type = "checkout.session.completed"
        else:
            obj = {"id": f"pi_{top_up_id}", "metadata": {"top_up_id": str(top_up_id)}}
            event_type = "payment_intent.succeeded"
        stripe_event_handle(event={"id": event_id, "type": event_type, "data": {"object": obj}})

    @rule(buyer=st.integers(0, 2), dollars=st.sampled_from(["0.50", "30.00", "150.00"]))
    def credit_note(self, buyer, dollars):
        credit_note_issue(user=self.buyers[buyer], amount=Decimal(dollars), reason="Goodwill", staff=self.staff)

    # --- orders and instances -----------------------------------------------------------------------

    @rule(
        target=instances,
        buyer=st.integers(0, 2),
        pricing=st.sampled_from(["on_demand", "on_demand", "spot", "reserved"]),
        type_name=st.sampled_from(["l4-24g.1x", "l4-24g.2x"]),
        count=st.integers(1, 2),
    )
    def order(self, buyer, pricing, type_name, count):
        request = OrderRequest(instance_type=type_name, image="ubuntu:24.04", pricing=pricing, count=count)
        if pricing == "spot":
            request.max_price_per_hour = Decimal("0.30")
        if pricing == "reserved":
            request.term_hours = 168
        try:
            placed = order_place(buyer=self.buyers[buyer], request=request)
        except ApplicationError:  # no capacity, no balance, over the spend limit: refused whole
            return multiple()
        return multiple(*placed.instances.values_list("pk", flat=True))

    @rule(target=instances, buyer=st.integers(0, 2), type_name=st.sampled_from(["l4-24g.1x", "l4-24g.2x"]))
    def order_on_demand(self, buyer, type_name):
        """On-demand orders are most of the market: a rule of their own, so runs have many."""
        return self.order(buyer=buyer, pricing="on_demand", type_name=type_name, count=1)

    @rule(instance_id=instances)
    def agent_reports_running(self, instance_id):
        """The agent finishing a start is the common report: a rule of its own."""
        self.agent_report(instance_id=instance_id, status="running")

    @rule(instance_id=instances, status=st.sampled_from(["running", "stopped", "terminated", "failed"]))
    def agent_report(self, instance_id, status):
        with contextlib.suppress(ApplicationError):
            agent.instance_agent_report(instance=Instance.objects.get(pk=instance_id), status=status)

    @rule(instance_id=instances, action=st.sampled_from(["stop", "start", "terminate"]))
    def buyer_action(self, instance_id, action):
        instance = Instance.objects.get(pk=instance_id)
        with contextlib.suppress(ApplicationError):
            getattr(lifecycle, f"instance_{action}")(instance=instance, actor_user=instance.buyer)

    @rule(instance_id=instances)
    def staff_refund(self, instance_id):
        charge = UsageRecord.objects.filter(instance_id=instance_id, settled_by__isnull=False).order_by("-pk").first()
        if charge is not None:
            with contextlib.suppress(ApplicationError):
                usage_refund(record=charge, reason="Outage", staff=self.staff)

    @rule(host=st.integers(0, 1), cents=st.sampled_from([20, 45, 90]))
    def price_change(self, host, cents):
        with contextlib.suppress(ApplicationError):
            self.hosts[host] = host_update(
                host=Host.objects.get(pk=self.hosts[host].pk), price_per_unit_hour=Decimal(cents) / 100
            )

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def ledger_balances(self):
        # Summed in Python, exactly: SQLite's SUM is floating point.
        totals: dict[int, Decimal] = defaultdict(Decimal)
        for transaction_id, amount in LedgerPosting.objects.values_list("transaction_id", "amount"):
            totals[transaction_id] += amount
        unbalanced = {pk: total for pk, total in totals.items() if total != 0}
        assert not unbalanced, unbalanced
        assert sum(totals.values(), Decimal(0)) == 0

    @invariant()
    def stored_balances_are_the_postings(self):
        assert balance_mismatches() == []

    @invariant()
    def each_second_billed_at_most_once(self):
        windows = defaultdict(list)
        for instance_id, start, end in UsageRecord.objects.values_list("instance_id", "window_start", "window_end"):
            windows[instance_id].append((start, end))
        for instance_id, spans in windows.items():
            spans.sort()
            for (_, previous_end), (start, _) in itertools.pairwise(spans):
                assert start >= previous_end, f"i-{instance_id} is billed twice from {start}"
        first_settled = (
            UsageRecord.objects.filter(settled_by__isnull=False).values("settled_by__key").annotate(first=Min("pk"))
        )
        for row in first_settled:  # one transaction per payer and batch, keyed by its first record
            assert row["settled_by__key"] == f"usage:{row['first']}"

    @invariant()
    def capacity_holds(self):
        for host in Host.objects.filter(pk__in=[h.pk for h in self.hosts]).select_related(
            "accelerator_model", "organization", "region"
        ):
            spec = host_capacity_spec(host)
            allocated = capacity.total(host_allocated_claims(host))
            limit = capacity.effective_capacity(spec)
            for dimension, used in allocated.amounts.items():
                assert used <= limit[dimension], f"{host.name}: {dimension} {used} > {limit[dimension]}"
            offers = {o.instance_type_id: o.available_count for o in Offer.objects.filter(host=host)}
            carriable = host_carriable_types(host) if host_is_sellable(host) else {}
            for instance_type, count in carriable.items():
                if instance_type.pk in offers:
                    assert offers[instance_type.pk] == count, f"{host.name} {instance_type.name}"
            if not host_is_sellable(host):
                assert not any(offers.values()), f"{host.name} is not sellable but lists offers"

    @invariant()
    def no_wallet_below_the_floor(self):
        for buyer in self.buyers:
            floor = Decimal(0)
            for instance in Instance.objects.filter(buyer=buyer).select_related("instance_type"):
                floor -= disk_grace_cost(
                    disk_gb=instance.instance_type.disk_gb,
                    storage_price_per_gb_month=instance.storage_price_per_gb_month,
                )
                floor -= instance.price_per_hour * Decimal(TICK.total_seconds()) / 3600
            assert wallet_balance(buyer) >= floor - Decimal("0.01"), f"{buyer.email} owes more than the floor"


RUN_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db
def test_market_invariants_hold_through_random_runs(settings):
    settings.STOPPED_DISK_GRACE_DAYS = 1  # so that runs reach disk releases
    run_state_machine_as_test(Market, settings=RUN_SETTINGS)
