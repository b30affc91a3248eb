"""PNG charts of a simulator run (matplotlib, no display needed): what each scenario sold and left
idle, why orders were turned away, utilization over the week, and per model and region."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt

from .engine import Report

DPI = 110


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _label_bars(axes, bars, texts: list[str]) -> None:
    for bar, text in zip(bars, texts, strict=True):
        axes.annotate(
            text,
            (bar.get_x() + bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )


def sold_and_idle(reports: list[Report], path: Path) -> Path:
    """Accelerator-hours used per scenario, beside the idle rate."""
    names = [r.scenario for r in reports]
    figure, (hours, idle) = plt.subplots(1, 2, figsize=(11, 0.45 * len(reports) + 1.6), sharey=True)
    used = [float(r.used_accelerator_hours) for r in reports]
    bars = hours.barh(names, used, color="#3b6ea5")
    _label_bars(hours, bars, [f"{v:,.0f}" for v in used])
    hours.set_xlabel("accelerator-hours running (7 days)")
    hours.set_xlim(0, max(used) * 1.2)
    hours.invert_yaxis()
    rates = [r.idle_rate * 100 for r in reports]
    bars = idle.barh(names, rates, color="#c0504d")
    _label_bars(idle, bars, [f"{v:.1f}%" for v in rates])
    idle.set_xlabel("idle rate (% of the fleet's accelerator-hours)")
    idle.set_xlim(0, 100)
    figure.suptitle("What each scenario runs, and leaves idle, on the same trace")
    return _save(figure, path)


def turned_away(reports: list[Report], path: Path) -> Path:
    """Orders turned away per scenario, stacked by reason."""
    reasons = sorted({reason for r in reports for reason in r.turned_away})
    names = [r.scenario for r in reports]
    figure, axes = plt.subplots(figsize=(11, 0.45 * len(reports) + 1.6))
    left = [0] * len(reports)
    for reason in reasons:
        counts = [r.turned_away.get(reason, 0) for r in reports]
        axes.barh(names, counts, left=left, label=reason)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    for y, total in enumerate(left):
        axes.annotate(f"{total:,}", (total, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("orders turned away")
    axes.set_xlim(0, max(left) * 1.15 if max(left) else 1)
    axes.legend(fontsize=8, loc="lower right")
    axes.set_title("Demand turned away, and why")
    return _save(figure, path)


def utilization_over_time(reports: list[Report], path: Path) -> Path:
    """The share of the fleet's accelerators running, hour by hour."""
    figure, axes = plt.subplots(figsize=(11, 4))
    for report in reports:
        samples = report.utilization_samples
        axes.plot([h / 24 for h in range(len(samples))], [s * 100 for s in samples], label=report.scenario, lw=1.2)
    axes.set_xlabel("day")
    axes.set_ylabel("accelerators running (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right", ncol=2)
    axes.set_title("Utilization through the week (the daily cycle of demand shows)")
    return _save(figure, path)


def utilization_by_group(report: Report, path: Path) -> Path:
    """Utilization per accelerator model and per region in one scenario."""
    figure, (models, regions) = plt.subplots(1, 2, figsize=(11, 5))
    for axes, used, fleet, title in (
        (models, report.used_by_model, report.accelerators_by_model, "per model"),
        (regions, report.used_by_region, report.accelerators_by_region, "per region"),
    ):
        names = sorted(fleet, key=lambda name: -used.get(name, 0) / (fleet[name] * report.minutes))
        rates = [100 * used.get(name, 0) / (fleet[name] * report.minutes) for name in names]
        bars = axes.barh(names, rates, color="#4f8f5b")
        _label_bars(axes, bars, [f"{v:.0f}% of {fleet[n]}" for v, n in zip(rates, names, strict=True)])
        axes.set_xlim(0, 115)
        axes.invert_yaxis()
        axes.set_xlabel("utilization (%), of N accelerators")
        axes.set_title(f"{report.scenario}: {title}", fontsize=10)
    return _save(figure, path)


def save_all(reports: list[Report], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    over_time = [r for r in reports if r.scenario.startswith(("fine slicing", "whole", "fine, no spot"))]
    return [
        sold_and_idle(reports, directory / "sold_and_idle.png"),
        turned_away(reports, directory / "turned_away.png"),
        utilization_over_time(over_time or reports[:3], directory / "utilization_over_time.png"),
        utilization_by_group(reports[0], directory / "utilization_by_model_and_region.png"),
    ]
