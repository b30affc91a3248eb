"""`python -m bench.simulate --hosts 200 --days 7 --seed 1`: one trace, every scenario on it, a table
of the figures and a CSV of them (and of the trace, to replay it: `--trace DIR`)."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.simulate.engine import Report, Scenario, simulate  # noqa: E402
from bench.simulate.trace import generate_trace, load_trace, save_trace  # noqa: E402

SCENARIOS = (
    Scenario("fine slicing (the product)"),
    Scenario("equal slicing", slicing="equal"),
    Scenario("whole servers", slicing="whole"),
    Scenario("fine, no spot backfill", spot=False),
    Scenario("fine, single-model orders", capability=False),
    Scenario("fine, best fit", packing="best_fit"),
    Scenario("fine, keep large shapes placeable", packing="keep_large"),
)
COLUMNS = (
    ("scenario", lambda r: r.scenario),
    ("placed", lambda r: r.placed),
    ("turned away", lambda r: sum(r.turned_away.values())),
    ("8x turned away", lambda r: r.eight_x_turned_away),
    ("sold acc-h", lambda r: f"{r.sold_accelerator_hours:.0f}"),
    ("utilization", lambda r: f"{r.utilization:.1%}"),
    ("idle", lambda r: f"{r.idle_rate:.1%}"),
    ("supplier $", lambda r: f"{r.supplier_revenue:.0f}"),
    ("platform $", lambda r: f"{r.platform_take:.0f}"),
    ("$/TFLOP-h", lambda r: r.price_per_tflop_hour),
    ("capability $/TFLOP-h", lambda r: r.capability_price_per_tflop_hour),
    ("preemptions", lambda r: r.preemptions),
    ("spot h lost", lambda r: f"{r.preempted_instance_hours_lost:.0f}"),
    ("fragmentation", lambda r: f"{r.fragmentation:.1%}"),
)


def table(reports: list[Report]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [[str(value(r)) for _, value in COLUMNS] for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", type=Path, help="replay the trace saved in this folder instead")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "simulate" / "out")
    args = parser.parse_args()
    started = time.perf_counter()
    trace = load_trace(args.trace) if args.trace else generate_trace(hosts=args.hosts, days=args.days, seed=args.seed)
    save_trace(trace, args.out / "trace")
    print(f"{len(trace.fleet)} hosts, {len(trace.demand)} orders over {args.days} days (seed {args.seed})")
    reports = [simulate(trace, scenario, days=args.days) for scenario in SCENARIOS]
    print(table(reports))
    for report in reports:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.turned_away.items()))
        print(f"  {report.scenario}: turned away by reason: {reasons or 'none'}")
    with (args.out / "scenarios.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _ in COLUMNS])
        writer.writerows([[value(r) for _, value in COLUMNS] for r in reports])
    elapsed = time.perf_counter() - started
    print(f"saved {args.out / 'scenarios.csv'} and the trace in {args.out / 'trace'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
