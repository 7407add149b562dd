"""Geometry of the report's inline SVG charts; the template draws it (no JavaScript, no library).

- `models_chart`: the paper's figure, IP over all categories, a group per model and a bar
  per mitigation;
- `ip_bar_chart`: one model's inappropriate probability per category, one bar per
  condition, with the 95 % bootstrap interval as an error bar; drawn as small multiples
  on one shared axis (`shared_axis`);
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


# Width a small multiple is drawn for: two side by side in the report's content column.
SMALL_MULTIPLE_WIDTH = 600.0


def small_multiple_bar_width(groups: int, bars: int) -> float:
    """The bar width that fits `groups` groups of `bars` bars in a small multiple."""
    room = (SMALL_MULTIPLE_WIDTH - LEFT - RIGHT) / max(groups, 1) - GROUP_GAP
    return _round(max(3.0, min(BAR_WIDTH, room / max(bars, 1))))


def shared_axis(primary: pl.DataFrame) -> tuple[float, float]:
    """One IP axis (top, tick step) that holds every value and interval of `primary`, so
    that charts of different models compare at a glance."""
    return axis_top([*primary["ip_high"].to_list(), *primary["inappropriate_probability"].to_list()])


def _grouped_bars(
    title: str,
    groups: list[tuple[str, list[tuple[str, str, dict | None]]]],
    palette: dict[str, str],
    axis: tuple[float, float],
    bar_width: float,
) -> Chart:
    """Bars in labelled groups; each bar is (mitigation, its tooltip's name, metrics row or
    None), with an error bar from ip_low to ip_high."""
    scale = _Axis(*axis)
    widest = max((len(bars) for _, bars in groups), default=1)
    group_width = bar_width * widest + GROUP_GAP
    bars, whiskers, missing, x_labels = [], [], [], []
    for g, (label, members) in enumerate(groups):
        left = LEFT + GROUP_GAP / 2 + g * group_width
        x_labels.append(Label(_round(left + bar_width * len(members) / 2), TOP + PLOT_HEIGHT + 14, label))
        for b, (mitigation, name, row) in enumerate(members):
            x = _round(left + b * bar_width)
            centre = _round(x + bar_width / 2)
            value = None if row is None else row["inappropriate_probability"]
            if is_missing(value):
                missing.append(Label(centre, TOP + PLOT_HEIGHT - 3, "n/a"))
                continue
            cell = with_interval(value, row["ip_low"], row["ip_high"])
            y = scale.y(value)
            bars.append(
                Mark(x + 1, y, bar_width - 2, _round(TOP + PLOT_HEIGHT - y), palette[mitigation],
                     f"{name}: IP {cell} %")
            )
            if not is_missing(row["ip_low"]) and not is_missing(row["ip_high"]):
                whiskers.append(Whisker(centre, scale.y(row["ip_high"]), scale.y(row["ip_low"])))
    width = LEFT + RIGHT + group_width * len(groups)
    return Chart(
        title=title,
        width=_round(width), height=TOP + PLOT_HEIGHT + BOTTOM,
        plot_left=LEFT, plot_right=_round(width - RIGHT), plot_top=TOP, plot_bottom=TOP + PLOT_HEIGHT,
        y_ticks=scale.ticks(), x_labels=tuple(x_labels), bars=tuple(bars), points=(), squares=(),
        whiskers=tuple(whiskers), missing=tuple(missing),
        legend=tuple((palette[m], m) for m in palette),
    )


def ip_bar_chart(
    primary: pl.DataFrame,
    model: str,
    mitigations: list[str],
    baseline: str | None,
    axis: tuple[float, float] | None = None,
    bar_width: float = BAR_WIDTH,
) -> Chart:
    """Grouped bars of one model: a group per category, a bar per mitigation, error bars
    from ip_low to ip_high. `primary` holds one profile's verdict (judge "any"); `axis`
    (top, step) is shared with other charts, or fitted to this model's values."""
    rows = primary.filter(pl.col("model") == model)
    by_key = rows_by_key(rows, "mitigation", "category")
    groups = [
        (category, [(m, f"{model} / {m}, {category}", by_key.get((m, category))) for m in mitigations])
        for category in categories(rows)
    ]
    return _grouped_bars(
        f"{model}: inappropriate probability (%) per category, 95 % bootstrap interval",
        groups, colours(mitigations, baseline), axis or shared_axis(rows), bar_width,
    )


def models_chart(
    primary: pl.DataFrame, listed: list[tuple[str, str]], baseline: str | None, axis: tuple[float, float]
) -> Chart:
    """The paper's figure: IP over all categories, a group per model, a bar per mitigation
    (in the configuration's order), with 95 % intervals."""
    by_key = rows_by_key(primary.filter(pl.col("category") == ALL_CATEGORIES), "model", "mitigation")
    models = list(dict.fromkeys(model for model, _ in listed))
    mitigations = list(dict.fromkeys(mitigation for _, mitigation in listed))
    groups = [
        (model, [(m, f"{model} / {m}, all", by_key.get((model, m))) for name, m in listed if name == model])
        for model in models
    ]
    return _grouped_bars(
        "Inappropriate probability (%) over all categories per model and mitigation, 95 % bootstrap interval",
        groups, colours(mitigations, baseline), axis, BAR_WIDTH,
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
