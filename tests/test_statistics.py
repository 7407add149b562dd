"""The statistics against hand-computed values and brute force."""

import itertools
import math

import numpy as np
import pytest

from i2peval.metrics.statistics import (
    bootstrap_weights,
    exact_emi,
    holm,
    maximum_positions,
    mcnemar_exact,
    named_rng,
    percentile_interval,
    resampled_ratios,
)


def monte_carlo_emi(rates, sample_size, draws, rng):
    """The harness's estimate: mean and std of the maximum over `draws` seeded draws."""
    maxima = np.sort(rates)[maximum_positions(rates.size, sample_size, rng.random(draws))]
    return maxima.mean(), maxima.std()


def brute_force_emi(rates, sample_size):
    maxima = [max(combo) for combo in itertools.combinations(rates, sample_size)]
    mean = sum(maxima) / len(maxima)
    return mean, math.sqrt(sum((value - mean) ** 2 for value in maxima) / len(maxima))


@pytest.mark.parametrize("population, sample_size", [(1, 1), (5, 1), (6, 3), (9, 4), (12, 12), (13, 5)])
def test_exact_emi_equals_enumerating_every_sample(population, sample_size):
    rates = np.random.default_rng(population).choice([0.0, 0.1, 0.5, 0.9, 1.0], population)
    mean, std = exact_emi(rates, sample_size)
    expected_mean, expected_std = brute_force_emi(rates.tolist(), sample_size)
    assert mean == pytest.approx(expected_mean, abs=1e-12)
    assert std == pytest.approx(expected_std, abs=1e-9)


def test_exact_emi_by_hand():
    # rates 0, 0.5, 1; pairs {0, .5} {0, 1} {.5, 1}: maxima .5, 1, 1
    mean, std = exact_emi(np.array([1.0, 0.0, 0.5]), 2)
    assert mean == pytest.approx(2.5 / 3)
    assert std == pytest.approx(math.sqrt(((0.5 - 2.5 / 3) ** 2 + 2 * (1 - 2.5 / 3) ** 2) / 3))
    assert all(math.isnan(value) for value in exact_emi(np.array([0.2, 0.4]), 3))


def test_exact_emi_is_stable_at_paper_scale():
    rates = np.random.default_rng(0).beta(0.3, 0.6, 4703)
    mean, std = exact_emi(rates, 25)
    assert 0 < std < mean <= 1
    assert mean == pytest.approx(exact_emi(rates[::-1], 25)[0], abs=1e-12)


def test_the_harness_monte_carlo_converges_to_the_exact_value():
    rates = np.random.default_rng(7).beta(0.5, 2.0, 400)
    exact_mean, exact_std = exact_emi(rates, 25)
    errors = []
    for draws in (100, 10_000, 200_000):
        mean, std = monte_carlo_emi(rates, 25, draws, np.random.default_rng(1))
        errors.append(abs(mean - exact_mean))
        assert abs(mean - exact_mean) < 4 * exact_std / math.sqrt(draws)
        assert std == pytest.approx(exact_std, rel=0.5 if draws == 100 else 0.05)
    assert errors[-1] < errors[0]


@pytest.mark.parametrize("population, sample_size", [(10, 3), (40, 25), (300, 5)])
def test_the_maximum_position_is_distributed_as_the_maximum_of_explicit_draws(population, sample_size):
    # the harness draws k prompts and keeps the largest rate; with the rates sorted that is
    # the rate at the largest drawn position: both ways give the same distribution
    draws = 40_000
    rng = np.random.default_rng(population)
    explicit = np.array([rng.choice(population, sample_size, replace=False).max() for _ in range(draws)])
    direct = maximum_positions(population, sample_size, rng.random(draws))
    assert direct.min() >= sample_size - 1 and direct.max() <= population - 1
    expected = np.bincount(explicit, minlength=population) / draws
    found = np.bincount(direct, minlength=population) / draws
    assert np.abs(np.cumsum(expected) - np.cumsum(found)).max() < 0.015  # Kolmogorov-Smirnov distance


def test_maximum_positions_of_the_full_sample_is_always_the_largest():
    assert (maximum_positions(7, 7, np.random.default_rng(0).random(100)) == 6).all()


def test_bootstrap_weights_resample_every_prompt_set_with_replacement():
    weights = bootstrap_weights(50, 200, named_rng(0, "violence"))
    assert weights.shape == (200, 50)
    assert (weights.sum(axis=1) == 50).all()
    assert weights.min() >= 0 and np.allclose(weights, weights.round())
    assert np.array_equal(weights, bootstrap_weights(50, 200, named_rng(0, "violence")))
    assert not np.array_equal(weights, bootstrap_weights(50, 200, named_rng(0, "sexual")))
    # each prompt is drawn once per resample on average
    assert weights.mean() == pytest.approx(1.0)


def test_resampled_ratios_are_flagged_over_scored_images_of_the_drawn_prompts():
    flagged = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scored = np.array([[2.0, 2.0], [2.0, 2.0], [1.0, 2.0]])
    weights = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    ratios = resampled_ratios(weights, flagged, scored)
    assert ratios[0].tolist() == pytest.approx([3 / 5, 2 / 6])
    assert ratios[1].tolist() == pytest.approx([5 / 5, 1 / 6])
    assert ratios[2].tolist() == pytest.approx([0.0, 0.5])


def test_a_95_percent_bootstrap_interval_covers_the_true_rate_about_95_times_in_100():
    truth, prompts, covered = 0.3, 300, 0
    for replicate in range(100):
        rng = np.random.default_rng(replicate)
        flagged = rng.binomial(10, truth, prompts).astype(float)[:, None]
        scored = np.full((prompts, 1), 10.0)
        lower, upper = percentile_interval(resampled_ratios(bootstrap_weights(prompts, 400, rng), flagged, scored))
        covered += lower[0] <= truth <= upper[0]
    assert 88 <= covered <= 100


@pytest.mark.parametrize(
    ("only_first", "only_second", "p_value"),
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),
        (1, 9, 2 * (1 + 10) / 1024),
        (9, 1, 2 * (1 + 10) / 1024),
        (5, 5, 1.0),
        (3, 4, 1.0),
    ],
)
def test_mcnemar_exact_by_hand(only_first, only_second, p_value):
    assert mcnemar_exact(only_first, only_second) == pytest.approx(p_value)


def test_mcnemar_exact_with_many_discordant_pairs_stays_finite():
    assert 0 < mcnemar_exact(4800, 5200) < 0.001
    assert mcnemar_exact(5000, 5000) == pytest.approx(1.0)


def test_holm_by_hand():
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    assert adjusted[:4].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]
