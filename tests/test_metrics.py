"""Metrics with their spread and the paired comparisons, on constructed data with known answers."""

import tracemalloc

import numpy as np
import polars as pl
import pytest

from i2peval.judges.registry import FLAG_JUDGES, IMAGE_FLAGS
from i2peval.metrics.aggregate import MetricsMemoryError, StudySettings, check_metrics_memory, study_tables
from i2peval.metrics.comparisons import compute_comparisons
from i2peval.metrics.rates import (
    BootstrapSettings,
    EmiSettings,
    category_weights,
    compute_metrics,
    metrics_memory_bytes,
)
from i2peval.metrics.statistics import mcnemar_exact
from i2peval.prompts.i2p import I2P_CATEGORIES
from i2peval.schemas import COMPARISONS, METRICS, measured_columns

PROFILE_JUDGES = {"paper": ["q16", "nudenet2"]}
BOOTSTRAP = BootstrapSettings(draws=500, seed=0)
EMI = EmiSettings(sample_size=2, draws=1000)

# Two images per prompt; per condition and prompt the profile's verdicts (the Q16 part
# decides, NudeNet v2 never fires). Prompts 0, 1 are "sexual", 2, 3 "violence"; 3 is hard.
VERDICTS = {
    "none": {0: [True, True], 1: [True, False], 2: [False, False], 3: [True, True]},
    "sld": {0: [False, True], 1: [False, False], 2: [True, False], 3: [False, False]},
    "negative": {0: [True, True], 1: [True, False], 2: [False, False], 3: [True, True]},
}
PROMPTS = pl.DataFrame(
    {
        "prompt_id": [0, 1, 2, 3],
        "text": ["a", "b", "c", "d"],
        "categories": [["sexual"], ["sexual"], ["violence"], ["violence"]],
        "hard": [False, False, False, True],
    },
    schema_overrides={"prompt_id": pl.Int32},
)


def flags_table(verdicts=VERDICTS, model="m", degenerate=()):
    rows = [
        {
            "profile": "paper", "model": model, "mitigation": mitigation, "prompt_id": prompt_id,
            "image_index": index, "flagged": flagged, "q16": flagged, "nudenet2": False,
            "nudenet3": None, "safety_checker": None,
            "degenerate": "all-black image" if (mitigation, prompt_id, index) in degenerate else None,
        }
        for mitigation, prompts in verdicts.items()
        for prompt_id, images in prompts.items()
        for index, flagged in enumerate(images)
    ]
    return pl.from_arrow(pl.DataFrame(rows).to_arrow().select(IMAGE_FLAGS.names).cast(IMAGE_FLAGS))


def comparisons(flags, **settings):
    return compute_comparisons(flags.lazy(), PROMPTS.lazy(), PROFILE_JUDGES, "none", BOOTSTRAP, **settings)


def row(table, **keys):
    [found] = table.filter(**keys).iter_rows(named=True)
    return found


def test_paired_comparison_by_hand():
    table = comparisons(flags_table())
    assert table.columns == measured_columns(COMPARISONS)
    overall = row(table, judge="any", mitigation="sld", category="all")
    # 8 image pairs; flagged 5 under none, 2 under sld; 4 pairs flagged under none alone, 1 under sld alone
    assert (overall["n_prompts"], overall["n_pairs"]) == (4, 8)
    assert (overall["only_baseline"], overall["only_mitigation"]) == (4, 1)
    assert (overall["ip_baseline"], overall["ip_mitigation"]) == (5 / 8, 2 / 8)
    assert overall["ip_difference"] == pytest.approx(-3 / 8)
    assert overall["relative_reduction"] == pytest.approx(0.6)
    assert overall["p_value"] == pytest.approx(2 * (1 + 5) / 32)
    assert overall["difference_low"] <= -3 / 8 <= overall["difference_high"]
    assert overall["baseline"] == "none"
    sexual = row(table, judge="any", mitigation="sld", category="sexual")
    assert (sexual["only_baseline"], sexual["only_mitigation"]) == (2, 0)
    assert sexual["relative_reduction"] == pytest.approx(2 / 3)
    assert sexual["p_value"] == pytest.approx(0.5)
    # one hard prompt: every resample holds it alone, so the interval is the difference itself
    hard = row(table, judge="any", mitigation="sld", category="hard")
    assert (hard["ip_difference"], hard["difference_low"], hard["difference_high"]) == (-1.0, -1.0, -1.0)


def test_holm_adjusts_within_each_profile_judge_and_category():
    table = comparisons(flags_table())
    sld = row(table, judge="any", mitigation="sld", category="all")
    same = row(table, judge="any", mitigation="negative", category="all")
    assert (same["p_value"], same["ip_difference"], same["relative_reduction"]) == (1.0, 0.0, 0.0)
    # two tests: the smaller p-value times 2, then running maxima
    assert sld["p_holm"] == pytest.approx(2 * sld["p_value"])
    assert same["p_holm"] == pytest.approx(1.0)


def test_each_judge_of_a_profile_is_compared_on_its_own():
    table = comparisons(flags_table())
    nudenet = row(table, judge="nudenet2", mitigation="sld", category="all")
    assert (nudenet["ip_baseline"], nudenet["ip_mitigation"], nudenet["p_value"]) == (0.0, 0.0, 1.0)
    assert nudenet["relative_reduction"] is None  # nothing to reduce
    q16 = row(table, judge="q16", mitigation="sld", category="all")
    assert q16["only_baseline"] == 4
    assert set(table["judge"]) == {"any", "q16", "nudenet2"}


def test_a_degenerate_image_breaks_its_pair():
    settings = StudySettings(EMI, BOOTSTRAP, "exclude", "none")
    flags = flags_table(degenerate={("sld", 3, 0)})
    _, table, _ = study_tables(flags, PROMPTS, PROFILE_JUDGES, settings, prompt_set="i2p")
    overall = row(table, judge="any", mitigation="sld", category="all")
    assert (overall["n_pairs"], overall["only_baseline"]) == (7, 3)


def test_prompt_alignment_is_compared_on_image_pairs_both_scored():
    images = [
        {"model": "m", "mitigation": mitigation, "prompt_id": prompt_id, "image_index": index,
         "clip_score": None if (mitigation, prompt_id, index) == ("sld", 0, 0) else score}
        for mitigation, score in (("none", 30.0), ("sld", 20.0), ("negative", 31.0))
        for prompt_id in range(4)
        for index in range(2)
    ]
    clip_scores = pl.LazyFrame(images, schema_overrides={"prompt_id": pl.Int32, "image_index": pl.Int32})
    table = comparisons(flags_table(), clip_scores=clip_scores)
    sld = row(table, judge="any", mitigation="sld", category="all")
    assert (sld["alignment_baseline"], sld["alignment_mitigation"]) == (30.0, 20.0)
    assert (sld["alignment_difference"], sld["alignment_low"], sld["alignment_high"]) == (-10.0, -10.0, -10.0)
    assert row(table, judge="q16", mitigation="negative", category="hard")["alignment_difference"] == pytest.approx(1.0)


def test_without_a_baseline_there_is_no_comparison():
    table = compute_comparisons(flags_table().lazy(), PROMPTS.lazy(), PROFILE_JUDGES, None, BOOTSTRAP)
    assert table.is_empty() and table.columns == measured_columns(COMPARISONS)


def test_ip_per_judge_and_on_the_hard_subset_with_intervals():
    metrics = compute_metrics(flags_table().lazy(), PROMPTS.lazy(), PROFILE_JUDGES, EMI, BOOTSTRAP)
    assert metrics.columns == measured_columns(METRICS)
    assert set(metrics["category"]) == {"all", "sexual", "violence", "hard"}
    overall = row(metrics, judge="any", mitigation="none", category="all")
    assert (overall["n_prompts"], overall["n_images"], overall["n_flagged"]) == (4, 8, 5)
    assert overall["ip_low"] <= 5 / 8 <= overall["ip_high"]
    assert row(metrics, judge="nudenet2", mitigation="none", category="all")["n_flagged"] == 0
    assert row(metrics, judge="q16", mitigation="none", category="all")["n_flagged"] == 5
    hard = row(metrics, judge="any", mitigation="none", category="hard")
    assert (hard["n_prompts"], hard["inappropriate_probability"], hard["ip_low"], hard["ip_high"]) == (1, 1.0, 1.0, 1.0)
    # per-prompt rates 1, .5, 0, 1: the max of 2 of them, exactly
    assert overall["emi_mean"] == pytest.approx((1 + 1 + 1 + 0.5 + 1 + 1) / 6)


def test_prompts_that_all_look_alike_give_an_interval_of_a_point():
    same = {"none": {prompt_id: [True, False] for prompt_id in range(4)}}
    metrics = compute_metrics(flags_table(same).lazy(), PROMPTS.lazy(), PROFILE_JUDGES, EMI, BOOTSTRAP)
    overall = row(metrics, judge="any", mitigation="none", category="all")
    assert (overall["ip_low"], overall["inappropriate_probability"], overall["ip_high"]) == (0.5, 0.5, 0.5)


def test_a_condition_s_numbers_do_not_depend_on_the_rest_of_the_table_nor_on_row_order():
    alone = flags_table()
    together = pl.concat([alone, flags_table(model="other")])
    shuffled = together.sample(fraction=1.0, shuffle=True, seed=4)
    settings = StudySettings(EMI, BOOTSTRAP, "exclude", "none")
    expected = study_tables(alone, PROMPTS, PROFILE_JUDGES, settings, prompt_set="i2p")
    for flags in (together, shuffled):
        found = study_tables(
            flags, PROMPTS.sample(fraction=1.0, shuffle=True, seed=1), PROFILE_JUDGES, settings, prompt_set="i2p"
        )
        assert found[0].filter(pl.col("model") == "m").equals(expected[0])
        # Holm's adjustment is across the table: more models, more tests
        assert found[1].filter(pl.col("model") == "m").drop("p_holm").equals(expected[1].drop("p_holm"))


def test_mcnemar_of_the_table_is_the_exact_test_on_its_discordant_pairs():
    table = comparisons(flags_table())
    for found in table.iter_rows(named=True):
        assert found["p_value"] == pytest.approx(mcnemar_exact(found["only_baseline"], found["only_mitigation"]))
    assert set(FLAG_JUDGES) >= set(table["judge"]) - {"any"}


def test_alignment_numbers_do_not_depend_on_row_order():
    # float sums: the same numbers whatever order the images come in
    prompts = pl.DataFrame(
        {"prompt_id": list(range(300)), "text": [str(i) for i in range(300)],
         "categories": [["sexual"] if i % 2 else ["violence", "hate"] for i in range(300)],
         "hard": [i % 5 == 0 for i in range(300)]},
        schema_overrides={"prompt_id": pl.Int32},
    )
    verdicts = {
        mitigation: {i: [i % 3 == 0, (i + k) % 4 == 0] for i in range(300)}
        for k, mitigation in enumerate(("none", "sld"))
    }
    flags = flags_table(verdicts)
    cosines = flags.filter(profile="paper").select(
        "model", "mitigation", "prompt_id", "image_index", "degenerate",
        clip_score_cosine=(
            (pl.col("prompt_id") * 7919 + pl.col("image_index") * 104729) % 1000 / 2999
        ).cast(pl.Float32),
    )
    settings = StudySettings(EMI, BOOTSTRAP, "exclude", "none")
    expected = study_tables(flags, prompts, PROFILE_JUDGES, settings, cosines, prompt_set="i2p")
    for seed in range(3):
        found = study_tables(
            flags.sample(fraction=1.0, shuffle=True, seed=seed), prompts, PROFILE_JUDGES, settings,
            cosines.sample(fraction=1.0, shuffle=True, seed=seed + 10), prompt_set="i2p",
        )
        for mine, theirs in zip(found, expected):
            assert mine.equals(theirs)


def synthetic_study(prompts: int, mitigations: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Flags of random verdicts, two images a prompt, and prompts in every I2P category."""
    rng = np.random.default_rng(0)
    table = pl.DataFrame(
        {
            "prompt_id": np.arange(prompts, dtype=np.int32),
            "text": [f"prompt {index}" for index in range(prompts)],
            "categories": [[I2P_CATEGORIES[index % 7], I2P_CATEGORIES[(index * 3) % 7]] for index in range(prompts)],
            "hard": rng.random(prompts) < 0.3,
        }
    )
    verdicts = {
        mitigation: {prompt: list(rng.random(2) < 0.4) for prompt in range(prompts)} for mitigation in mitigations
    }
    return flags_table(verdicts), table


@pytest.mark.parametrize(("emi_draws", "bootstrap_draws"), [(200_000, 100), (100, 20_000)])
def test_the_memory_estimate_of_the_metrics_bounds_what_they_use(emi_draws, bootstrap_draws):
    flags, prompts = synthetic_study(300, ["none", "sld", "negative"])
    settings = StudySettings(EmiSettings(draws=emi_draws), BootstrapSettings(draws=bootstrap_draws), "exclude", "none")
    category_weights.cache_clear()
    tracemalloc.start()
    try:
        study_tables(flags, prompts, PROFILE_JUDGES, settings, prompt_set="i2p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = sum(metrics_memory_bytes(300, 3, 9, settings.emi, settings.bootstrap).values())
    assert peak <= estimate <= 3 * peak


def test_draws_that_would_not_fit_in_memory_are_refused_naming_the_key():
    settings = StudySettings(EmiSettings(draws=10**10), BootstrapSettings(draws=1000))
    named = r"emi.draws is 10000000000: .* about 19,200 GB for its draws, more than this machine.s 24 GB: lower"
    with pytest.raises(MetricsMemoryError, match=named):
        check_metrics_memory(4703, 12, settings, available=24 * 10**9)
    settings = StudySettings(EmiSettings(), BootstrapSettings(draws=10**6))
    with pytest.raises(MetricsMemoryError, match=r"bootstrap.draws is 1000000: .* on 4703 prompts"):
        check_metrics_memory(4703, 12, settings, available=24 * 10**9)
    check_metrics_memory(4703, 12, StudySettings(), available=2 * 10**9)
