"""Chart specifications for pages: what `templates/includes/chart.html` draws with Chart.js.

A spec carries each value twice: as a number for the drawing and as the text a person reads
(money in the platform currency, percentages), so the values are written on the chart and in
the table under it, not shown only on hover, and screen readers get the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from marketplace.currency import money_text, platform_currency

Number = Decimal | int | float | None

# Colour-blind-safe pairs (blue, orange, green, purple), the same as the SVG swatches.
COLOURS = ("#2f6fed", "#e07b24", "#1b9e77", "#7b52ab")


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[Number]


def money_value(value: Number, places: int = 2) -> str:
    return "—" if value is None else money_text(Decimal(str(value)), places)


def percent_value(value: Number) -> str:
    return "—" if value is None else f"{Decimal(str(value)) * 100:.0f}%"


def plain_value(value: Number) -> str:
    return "—" if value is None else f"{Decimal(str(value)).normalize():,f}"


FORMATS: dict[str, Callable[[Number], str]] = {"money": money_value, "percent": percent_value, "plain": plain_value}


def chart_spec(
    chart_id: str,
    title: str,
    *,
    kind: Literal["bar", "line"],
    labels: Sequence[str],
    series: Sequence[Series],
    x_title: str,
    y_title: str,
    value_format: Literal["money", "percent", "plain"] = "plain",
    stacked: bool = False,
) -> dict[str, Any]:
    """One chart: `labels` along the x axis, one value per label in each series."""
    fmt = FORMATS[value_format]
    datasets = []
    for index, one in enumerate(series):
        if len(one.values) != len(labels):
            raise ValueError(f"series {one.label!r} has {len(one.values)} values for {len(labels)} labels")
        datasets.append(
            {
                "label": one.label,
                "data": [None if v is None else str(v) for v in one.values],
                "text": [fmt(v) for v in one.values],
                "colour": COLOURS[index % len(COLOURS)],
            }
        )
    return {
        "id": chart_id,
        "data_id": f"{chart_id}-data",
        "title": title,
        "kind": kind,
        "labels": list(labels),
        "datasets": datasets,
        "x_title": x_title,
        "y_title": y_title,
        "format": value_format,
        "stacked": stacked,
        "symbol": platform_currency().symbol if value_format == "money" else "",
        "rows": [{"label": label, "values": [d["text"][i] for d in datasets]} for i, label in enumerate(labels)],
    }
