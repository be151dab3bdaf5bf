"""The summary's statistics against scipy's own answers: bootstrap intervals (seeded, so repeatable), pass rates,
pairs oriented by higher_is_better, Wilcoxon or the sign test, and pairwise judges' binomial test."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from tunery_evaluator.domain import ExampleResult, Grade
from tunery_evaluator.graders.base import Answer
from tunery_evaluator.stats import GraderMeta, mean_interval, paired_test, summarize


def results(scores: dict[str, list[float | None]], grader: str = "g", errors: dict[str, set[int]] | None = None,
            ) -> list[ExampleResult]:
    n = len(next(iter(scores.values())))
    out = []
    for i in range(n):
        answers, grades = [], []
        for model, values in scores.items():
            bad = i in (errors or {}).get(model, set())
            answers.append(Answer(model, "x", error="endpoint_error" if bad else ""))
            v = values[i]
            grades.append(Grade(grader, model, error="model_error") if bad else
                          Grade(grader, model, score=v, passed=None if v is None else v >= 0.5))
        out.append(ExampleResult("e", i, "", [], "", answers, grades))
    return out


def test_interval_is_seeded_and_contains_the_mean() -> None:
    values = [0.1, 0.4, 0.35, 0.8, 0.6, 0.2, 0.9, 0.55]
    mean, low, high = mean_interval(values, seed=3)
    assert mean == pytest.approx(sum(values) / len(values)) and low < mean < high
    assert mean_interval(values, seed=3) == (mean, low, high)
    assert mean_interval([0.5, 0.5, 0.5], seed=0) == (0.5, 0.5, 0.5)
    assert mean_interval([], seed=0) == (0.0, 0.0, 0.0)


def test_paired_test_is_wilcoxon_or_the_sign_test() -> None:
    diffs = [0.3, 0.1, -0.05, 0.2, 0.4, 0.25, 0.0]
    p, name = paired_test(diffs)
    assert name == "wilcoxon" and p == pytest.approx(sps.wilcoxon([d for d in diffs if d]).pvalue)
    assert paired_test([0.0, 0.0, 0.0]) == (1.0, "sign")
    p, name = paired_test([0.2, 0.1, -0.3])
    assert name == "sign" and p == pytest.approx(sps.binomtest(2, 3, 0.5).pvalue)


def test_summary_orients_pairs_and_counts_errors() -> None:
    rs = results({"a": [0.9, 0.8, 0.7, 0.1, 0.6, 0.9], "b": [0.1, 0.2, 0.7, 0.2, 0.5, 0.3]},
                 errors={"b": {5}})
    s = summarize(rs, [GraderMeta("g", higher_is_better=True)], ["a", "b"], seed=1)
    ga, gb = s.graders
    assert (ga.model, ga.count, ga.errored, gb.count, gb.errored) == ("a", 6, 0, 5, 1)
    assert ga.pass_rate == pytest.approx(5 / 6) and s.model_errors == {"b": 1}
    (pair,) = s.pairs
    assert (pair.wins, pair.losses, pair.ties, pair.count) == (3, 1, 1, 5) and pair.mean_difference > 0
    assert pair.test == "sign"
    # Lower is better (a loss, a latency): the same numbers make b the better one.
    low = summarize(rs, [GraderMeta("g", higher_is_better=False)], ["a", "b"], seed=1).pairs[0]
    assert (low.wins, low.losses) == (1, 3) and low.mean_difference == pytest.approx(-pair.mean_difference)


def test_pairwise_judges_use_a_binomial_test() -> None:
    labels = ["a", "a", "b", "tie", "a", "a"]
    rs = [ExampleResult("e", i, "", [], "", [Answer("x", "1"), Answer("y", "2")],
                        [Grade("judge", "x", score=None, label=lab, against="y")]) for i, lab in enumerate(labels)]
    s = summarize(rs, [GraderMeta("judge", pairwise=True)], ["x", "y"], seed=0)
    (pair,) = s.pairs
    assert (pair.wins, pair.losses, pair.ties, pair.test) == (4, 1, 1, "binomial")
    assert pair.p_value == pytest.approx(sps.binomtest(4, 5, 0.5).pvalue)
    share = {g.model: g.mean for g in s.graders}
    assert share["x"] == pytest.approx(4.5 / 6) and share["y"] == pytest.approx(1.5 / 6)
