"""`python -m bench.simulate --hosts 200 --days 7 --seed 1`: one trace, every scenario on it (in
parallel, one process per core), a table of the figures, CSVs of them and of utilization per model
and region, PNG charts, and the trace itself to replay it (`--trace DIR`)."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.simulate import charts  # noqa: E402
from bench.simulate.engine import Report, Scenario, simulate  # noqa: E402
from bench.simulate.trace import Trace, generate_trace, load_trace, save_trace  # noqa: E402

SCENARIOS = (
    Scenario("fine slicing (the product)"),
    Scenario("equal slicing", slicing="equal"),
    Scenario("whole servers", slicing="whole"),
    Scenario("fine, no spot backfill", spot=False),
    Scenario("fine, single-model orders", capability=False),
    Scenario("fine, best fit", packing="best_fit"),
    Scenario("fine, keep large shapes placeable", packing="keep_large"),
    Scenario("fine, no reserved resale", resale=False),
)
COLUMNS = (
    ("scenario", lambda r: r.scenario),
    ("placed", lambda r: r.placed),
    ("turned away", lambda r: sum(r.turned_away.values())),
    ("8x turned away", lambda r: r.eight_x_turned_away),
    ("sold acc-h", lambda r: f"{r.sold_accelerator_hours:.0f}"),
    ("used acc-h", lambda r: f"{r.used_accelerator_hours:.0f}"),
    ("utilization", lambda r: f"{r.utilization:.1%}"),
    ("idle", lambda r: f"{r.idle_rate:.1%}"),
    ("supplier $", lambda r: f"{r.supplier_revenue:.0f}"),
    ("platform $", lambda r: f"{r.platform_take:.0f}"),
    ("resale credit $", lambda r: f"{r.resale_credit:.0f}"),
    ("reserved net $", lambda r: f"{r.reserved_net_cost:.0f}"),
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


def by_group_rows(report: Report) -> list[list[object]]:
    """Utilization and idle rate per accelerator model and per region."""
    rows: list[list[object]] = []
    for group, used, fleet in (
        ("model", report.used_by_model, report.accelerators_by_model),
        ("region", report.used_by_region, report.accelerators_by_region),
    ):
        for name in sorted(fleet):
            utilization = used.get(name, 0) / (fleet[name] * report.minutes)
            hours = used.get(name, 0) / 60
            rows.append(
                [
                    report.scenario,
                    group,
                    name,
                    fleet[name],
                    f"{hours:.0f}",
                    f"{utilization:.3f}",
                    f"{1 - utilization:.3f}",
                ]
            )
    return rows


def run_scenarios(trace: Trace, days: int, workers: int) -> list[Report]:
    """Every scenario on the trace, `workers` at a time in separate processes (each run is pure)."""
    if workers <= 1:
        return [simulate(trace, scenario, days=days) for scenario in SCENARIOS]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(partial(simulate, trace, days=days), SCENARIOS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", type=Path, help="replay the trace saved in this folder instead")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "simulate" / "out")
    parser.add_argument("--charts", type=Path, help="where to save the PNG charts (default: --out)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="scenarios run at once")
    args = parser.parse_args()
    started = time.perf_counter()
    trace = load_trace(args.trace) if args.trace else generate_trace(hosts=args.hosts, days=args.days, seed=args.seed)
    save_trace(trace, args.out / "trace")
    print(f"{len(trace.fleet)} hosts, {len(trace.demand)} orders over {args.days} days (seed {args.seed})")
    reports = run_scenarios(trace, args.days, args.workers)
    print(table(reports))
    for report in reports:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.turned_away.items()))
        print(f"  {report.scenario}: turned away by reason: {reasons or 'none'}")
    with (args.out / "scenarios.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _ in COLUMNS])
        writer.writerows([[value(r) for _, value in COLUMNS] for r in reports])
    with (args.out / "utilization.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scenario", "group", "name", "accelerators", "used acc-h", "utilization", "idle"])
        for report in reports:
            writer.writerows(by_group_rows(report))
    pictures = charts.save_all(reports, args.charts or args.out)
    elapsed = time.perf_counter() - started
    print(f"saved {args.out / 'scenarios.csv'}, {args.out / 'utilization.csv'}, the trace in {args.out / 'trace'}")
    print(f"charts: {', '.join(str(p) for p in pictures)} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
