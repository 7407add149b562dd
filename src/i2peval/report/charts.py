"""Geometry of the report's inline SVG charts; the template draws it (no JavaScript, no library).

- `ip_bar_chart`: one model's inappropriate probability per category, one bar per
  condition, with the 95 % bootstrap interval as an error bar;
- `emi_chart`: one model's EMI per condition, the exact mean ± std and the Monte Carlo
  estimate ± std beside it.

Coordinates are SVG user units, rounded to 0.1. A cell without a value gets no mark but
an "n/a" label, so a chart never shows a number the tables do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from i2peval.report.formatting import emi_cell, is_missing, with_interval
from i2peval.report.tables import ALL_CATEGORIES, categories, rows_by_key

# Okabe-Ito colours (distinguishable with colour blindness); the baseline is grey.
BASELINE_COLOUR = "#7f7f7f"
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
LEFT, RIGHT, TOP, BOTTOM = 48.0, 12.0, 12.0, 58.0
PLOT_HEIGHT = 200.0
BAR_WIDTH = 14.0
GROUP_GAP = 14.0


@dataclass(frozen=True)
class Mark:
    """A bar (x, y, width, height) or a point (x, y), with its tooltip."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Whisker:
    """A vertical error bar from y_high (top) to y_low (bottom) at x."""

    x: float
    y_high: float
    y_low: float


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """Everything the template draws for one chart."""

    title: str
    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    y_ticks: tuple[Label, ...]
    x_labels: tuple[Label, ...]
    bars: tuple[Mark, ...]
    points: tuple[Mark, ...]
    squares: tuple[Mark, ...]
    whiskers: tuple[Whisker, ...]
    missing: tuple[Label, ...]
    legend: tuple[tuple[str, str], ...]


def _round(value: float) -> float:
    return round(value, 1)


def colours(mitigations: list[str], baseline: str | None) -> dict[str, str]:
    """A colour per mitigation: grey for the baseline, the palette in order for the others."""
    others = iter(COLOURS * (1 + len(mitigations) // len(COLOURS)))
    return {m: BASELINE_COLOUR if m == baseline else next(others) for m in mitigations}


# Upper ends of the y axis (fractions) and their tick steps.
AXIS_TOPS = ((0.1, 0.02), (0.2, 0.05), (0.4, 0.1), (0.6, 0.1), (0.8, 0.2), (1.0, 0.2))


def axis_top(values: list[float]) -> tuple[float, float]:
    """The smallest axis top (and its tick step) that holds every value."""
    largest = max([v for v in values if not is_missing(v)], default=0.0)
    return next((top, step) for top, step in AXIS_TOPS if largest <= top + 1e-12 or top == 1.0)


class _Axis:
    def __init__(self, top: float, step: float):
        self.top, self.step = top, step

    def y(self, fraction: float) -> float:
        return _round(TOP + PLOT_HEIGHT * (1 - min(max(fraction, 0.0), self.top) / self.top))

    def ticks(self) -> tuple[Label, ...]:
        count = round(self.top / self.step)
        return tuple(Label(LEFT - 6, self.y(self.step * i), f"{self.step * i * 100:g}") for i in range(count + 1))


def ip_bar_chart(primary: pl.DataFrame, model: str, mitigations: list[str], baseline: str | None) -> Chart:
    """Grouped bars of one model: a group per category, a bar per mitigation, error bars
    from ip_low to ip_high. `primary` holds one profile's verdict (judge "any")."""
    rows = primary.filter(pl.col("model") == model)
    by_key = rows_by_key(rows, "mitigation", "category")
    groups = categories(rows)
    palette = colours(mitigations, baseline)
    axis = _Axis(*axis_top([*rows["ip_high"].to_list(), *rows["inappropriate_probability"].to_list()]))
    group_width = BAR_WIDTH * len(mitigations) + GROUP_GAP
    bars, whiskers, missing, x_labels = [], [], [], []
    for g, category in enumerate(groups):
        left = LEFT + GROUP_GAP / 2 + g * group_width
        x_labels.append(Label(_round(left + BAR_WIDTH * len(mitigations) / 2), TOP + PLOT_HEIGHT + 14, category))
        for b, mitigation in enumerate(mitigations):
            x = _round(left + b * BAR_WIDTH)
            centre = _round(x + BAR_WIDTH / 2)
            row = by_key.get((mitigation, category))
            value = None if row is None else row["inappropriate_probability"]
            if is_missing(value):
                missing.append(Label(centre, TOP + PLOT_HEIGHT - 3, "n/a"))
                continue
            cell = with_interval(value, row["ip_low"], row["ip_high"])
            y = axis.y(value)
            bars.append(
                Mark(x + 1, y, BAR_WIDTH - 2, _round(TOP + PLOT_HEIGHT - y), palette[mitigation],
                     f"{model} / {mitigation}, {category}: IP {cell} %")
            )
            if not is_missing(row["ip_low"]) and not is_missing(row["ip_high"]):
                whiskers.append(Whisker(centre, axis.y(row["ip_high"]), axis.y(row["ip_low"])))
    width = LEFT + RIGHT + group_width * len(groups)
    return Chart(
        title=f"{model}: inappropriate probability (%) per category, 95 % bootstrap interval",
        width=_round(width), height=TOP + PLOT_HEIGHT + BOTTOM,
        plot_left=LEFT, plot_right=_round(width - RIGHT), plot_top=TOP, plot_bottom=TOP + PLOT_HEIGHT,
        y_ticks=axis.ticks(), x_labels=tuple(x_labels), bars=tuple(bars), points=(), squares=(),
        whiskers=tuple(whiskers), missing=tuple(missing),
        legend=tuple((palette[m], m) for m in mitigations),
    )


def emi_chart(primary: pl.DataFrame, model: str, mitigations: list[str], baseline: str | None) -> Chart:
    """One model's EMI over all categories per mitigation: the exact mean ± std (circle)
    and the Monte Carlo mean ± std (square) beside it."""
    by_key = rows_by_key(
        primary.filter((pl.col("model") == model) & (pl.col("category") == ALL_CATEGORIES)), "mitigation"
    )
    palette = colours(mitigations, baseline)
    axis = _Axis(1.0, 0.2)
    slot = 56.0
    points, squares, whiskers, missing, x_labels = [], [], [], [], []
    for i, mitigation in enumerate(mitigations):
        centre = LEFT + slot * (i + 0.5)
        x_labels.append(Label(_round(centre), TOP + PLOT_HEIGHT + 14, mitigation))
        row = by_key.get((mitigation,), {})
        for offset, (mean_key, std_key, kind, marks) in zip(
            (-8, 8), (("emi_mean", "emi_std", "exact", points), ("emi_mc_mean", "emi_mc_std", "Monte Carlo", squares))
        ):
            x = _round(centre + offset)
            mean, std = row.get(mean_key), row.get(std_key)
            if is_missing(mean):
                missing.append(Label(x, TOP + PLOT_HEIGHT - 4, "n/a"))
                continue
            marks.append(Mark(x, axis.y(mean), 0, 0, palette[mitigation],
                              f"{model} / {mitigation}: EMI {kind} {emi_cell(mean, std)} %"))
            if not is_missing(std):
                whiskers.append(Whisker(x, axis.y(mean + std), axis.y(mean - std)))
    width = LEFT + RIGHT + slot * len(mitigations)
    return Chart(
        title=f"{model}: EMI (%) over all categories, mean ± std; circle exact, square Monte Carlo",
        width=_round(width), height=TOP + PLOT_HEIGHT + BOTTOM,
        plot_left=LEFT, plot_right=_round(width - RIGHT), plot_top=TOP, plot_bottom=TOP + PLOT_HEIGHT,
        y_ticks=axis.ticks(), x_labels=tuple(x_labels), bars=(), points=tuple(points), squares=tuple(squares),
        whiskers=tuple(whiskers), missing=tuple(missing), legend=tuple((palette[m], m) for m in mitigations),
    )
