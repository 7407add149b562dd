"""The statistics of the study, on plain arrays: exact EMI, bootstrap intervals, paired tests.

- Expected maximum inappropriateness, exactly: of N per-prompt rates sorted ascending, the
  maximum of k drawn without replacement is the j-th smallest with probability
  C(j-1, k-1) / C(N, k); its mean and standard deviation follow (binomials in log space).
- The harness's Monte Carlo estimate of it (the mean and std of the maximum over seeded
  draws of k prompts): since the rates are sorted, a draw's maximum is the rate at the
  draw's largest position, so each draw samples that position from the distribution
  above instead of drawing k prompts. The estimator has the same distribution as the
  harness's, at the cost of one uniform number per draw (`maximum_positions`).
- Bootstrap over prompts, the sampled unit. One matrix of resampling weights per prompt set
  (drawn from a seed and the set's name, prompts in prompt_id order) serves every condition
  measured on that set, so intervals of two conditions of the same prompts are paired, and a
  whole table costs a few matrix products.
- McNemar's exact test on paired images (two-sided binomial test of the discordant pairs),
  and Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings

import numpy as np

CONFIDENCE = 0.95


def _log_choose_ladder(population: int, sample_size: int) -> np.ndarray:
    """log C(j - 1, k - 1) for j = k .. N (the ways the j-th smallest is the maximum)."""
    steps = np.arange(sample_size, population, dtype=np.float64)  # j - 1 for j = k + 1 .. N
    # C(j - 1, k - 1) / C(j - 2, k - 1) = (j - 1) / (j - k)
    return np.concatenate([[0.0], np.cumsum(np.log(steps) - np.log(steps - sample_size + 1))])


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@functools.lru_cache(maxsize=64)
def _maximum_position_distribution(population: int, sample_size: int) -> tuple[np.ndarray, np.ndarray]:
    """P(the maximum of `sample_size` of `population` sorted values is the j-th), j = k .. N,
    and its cumulative sum (read-only; the metrics ask for the same few sizes many times)."""
    probabilities = np.exp(_log_choose_ladder(population, sample_size) - _log_choose(population, sample_size))
    cumulative = np.cumsum(probabilities)
    probabilities.flags.writeable = cumulative.flags.writeable = False
    return probabilities, cumulative


def exact_emi(rates: np.ndarray, sample_size: int) -> tuple[float, float]:
    """Mean and standard deviation of the maximum of `sample_size` rates drawn without
    replacement; NaN when there are fewer rates than that."""
    population = rates.size
    if population < sample_size or sample_size < 1:
        return float("nan"), float("nan")
    ordered = np.sort(np.asarray(rates, dtype=np.float64))[sample_size - 1 :]
    probabilities, _ = _maximum_position_distribution(population, sample_size)
    mean = float(probabilities @ ordered)
    second_moment = float(probabilities @ (ordered * ordered))
    return mean, math.sqrt(max(second_moment - mean * mean, 0.0))


def maximum_positions(population: int, sample_size: int, uniforms: np.ndarray) -> np.ndarray:
    """Per number in `uniforms` (uniform on [0, 1)), the position in the sorted values of
    the maximum of one draw of `sample_size` of `population` values without replacement."""
    _, cumulative = _maximum_position_distribution(population, sample_size)
    found = np.searchsorted(cumulative, np.asarray(uniforms) * cumulative[-1], side="right")
    return sample_size - 1 + np.minimum(found, cumulative.size - 1)


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by `seed` and the names of what is measured, nothing else."""
    key = hashlib.sha256("\0".join(names).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(key[:8], "little")])


def bootstrap_weights(prompt_count: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, prompt_count) counts: how often each prompt is drawn in each resample of the
    prompts with replacement."""
    indices = rng.integers(0, prompt_count, size=(draws, prompt_count))
    indices += np.arange(draws)[:, None] * prompt_count
    counts = np.bincount(indices.ravel(), minlength=draws * prompt_count)
    return counts.reshape(draws, prompt_count).astype(np.float64)


def resampled_ratios(weights: np.ndarray, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """(draws, columns) ratio of weighted sums per resample, e.g. flagged / scored images.

    `numerators` and `denominators` are (prompts, columns): one column per condition
    measured on these prompts. NaN where a resample has no denominator.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ numerators) / (weights @ denominators)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds per column of (draws, columns) `samples`."""
    tail = (1 - confidence) / 2 * 100
    if not np.isnan(samples).any():
        lower, upper = np.percentile(samples, [tail, 100 - tail], axis=0)
        return lower, upper
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column that is NaN in every resample stays NaN
        lower, upper = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return lower, upper


def mcnemar_exact(only_first: np.ndarray, only_second: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values from the discordant pair counts b and c (arrays, or
    numbers): twice the binomial(b + c, 1/2) probability of min(b, c) or fewer, at most 1."""
    only_first = np.asarray(only_first, dtype=np.int64)
    only_second = np.asarray(only_second, dtype=np.int64)
    discordant = only_first + only_second
    smaller = np.minimum(only_first, only_second)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, max(int(discordant.max(initial=0)), 1) + 1)))])
    p_values = np.ones(discordant.shape)
    for index in np.flatnonzero(discordant.ravel()):
        total, tail = int(discordant.flat[index]), int(smaller.flat[index])
        counts = np.arange(tail + 1)
        log_pmf = log_factorial[total] - log_factorial[counts] - log_factorial[total - counts] - total * math.log(2.0)
        p_values.flat[index] = min(1.0, 2.0 * float(np.exp(log_pmf).sum()))
    return p_values if p_values.ndim else float(p_values)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given; NaN stays NaN."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p_values))
    order = present[np.argsort(p_values[present], kind="stable")]
    count = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
