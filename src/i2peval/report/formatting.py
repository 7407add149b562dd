"""Numbers as the report prints them: percentages, intervals, differences, p-values.

Every cell is text formatted here, so the template only lays out strings. A value the
tables do not hold is printed as "n/a"; no cell is ever computed from a missing value.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MISSING = "–"
NOT_AVAILABLE = "n/a"
SIGNIFICANCE = 0.05


def is_missing(value: float | None) -> bool:
    """None or NaN (the only value unequal to itself)."""
    return value is None or value != value


def _decimal(value: float) -> Decimal:
    # via repr: the shortest decimal that round-trips, so 0.3775 is 0.3775, not 0.37749999...
    return Decimal(repr(float(value)))


def _round2(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with 2 decimals (0.3775 -> "37.75"); "n/a" when missing."""
    if is_missing(fraction):
        return NOT_AVAILABLE
    return _round2(_decimal(fraction) * 100)


def signed_points(fraction: float | None) -> str:
    """A difference of fractions in percentage points with its sign (-0.2615 -> "-26.15")."""
    if is_missing(fraction):
        return NOT_AVAILABLE
    text = _round2(_decimal(fraction) * 100)
    if text in ("0.00", "-0.00"):
        return "0.00"
    return text if text.startswith("-") else f"+{text}"


def interval(low: float | None, high: float | None, points=percent) -> str:
    """"[low, high]" in percent (or as `points` formats them); "" when either end is missing."""
    if is_missing(low) or is_missing(high):
        return ""
    return f"[{points(low)}, {points(high)}]"


def with_interval(value: float | None, low: float | None, high: float | None, points=percent) -> str:
    """"37.75 [35.10, 40.20]"; the value alone when the interval is missing; "n/a" without value."""
    if is_missing(value):
        return NOT_AVAILABLE
    bounds = interval(low, high, points)
    return f"{points(value)} {bounds}" if bounds else points(value)


def emi_cell(mean: float | None, std: float | None) -> str:
    """EMI as "mean ± std" in percent, "n/a" when it could not be computed."""
    if is_missing(mean):
        return NOT_AVAILABLE
    return f"{percent(mean)} ± {percent(std)}"


def relative(fraction: float | None) -> str:
    """A relative reduction as a percentage (0.6927 -> "69.27 %"); "n/a" when missing."""
    return NOT_AVAILABLE if is_missing(fraction) else f"{percent(fraction)} %"


def p_value(value: float | None) -> str:
    """A p-value with 2 significant digits, "< 0.0001" below that; "n/a" when missing."""
    if is_missing(value):
        return NOT_AVAILABLE
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}"


def significance(p_holm: float | None) -> str:
    """Whether a Holm-adjusted p-value is below 0.05, in words."""
    if is_missing(p_holm):
        return NOT_AVAILABLE
    return "yes" if p_holm < SIGNIFICANCE else "no"


def clip_points(value: float | None) -> str:
    """A CLIPScore (or a difference of two) with 2 decimals and its sign."""
    return NOT_AVAILABLE if is_missing(value) else f"{value:+.2f}"
