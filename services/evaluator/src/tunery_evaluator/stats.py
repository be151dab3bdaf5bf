"""The summary of an evaluation from its stored results: means with bootstrap 95% intervals, pass rates, and
wins/losses/ties per model pair with a paired test (scipy.stats does the statistics).

Intervals use the evaluation's seed, so the same results give the same summary. Pairs are oriented by the grader's
``higher_is_better``: a positive difference always means model_a did better. Pairwise judges store one grade per
pair (model = a, against = b, label "a"/"b"/"tie"); their pairs use an exact binomial test on the decisive verdicts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from tunery_evaluator.domain import ExampleResult, Grade, GraderSummary, PairwiseSummary, Summary
from tunery_evaluator.graders.base import GradeResult

RESAMPLES = 2000
MIN_WILCOXON = 5  # fewer non-zero differences than this: a sign test


@dataclass(frozen=True, slots=True)
class GraderMeta:
    name: str
    higher_is_better: bool = True
    pairwise: bool = False
    extra: Callable[[list[GradeResult]], dict[str, float]] | None = None


def mean_interval(values: Sequence[float], seed: int) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% bootstrap (BCa) interval; a point when there is nothing to resample."""
    if not values:
        return 0.0, 0.0, 0.0
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2 or float(np.ptp(arr)) == 0.0:
        return mean, mean, mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((arr,), np.mean, confidence_level=0.95, n_resamples=RESAMPLES,
                              random_state=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):  # degenerate resamples: the percentile interval instead
        low, high = (float(x) for x in np.percentile(res.bootstrap_distribution, [2.5, 97.5]))
    return mean, low, high


def paired_test(diffs: Sequence[float]) -> tuple[float, str]:
    """(two-sided p-value, test name): Wilcoxon signed-rank, or a sign test when too few differences are non-zero."""
    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) >= MIN_WILCOXON:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.wilcoxon(nonzero).pvalue)
        return p, "wilcoxon"
    if not nonzero:
        return 1.0, "sign"
    wins = sum(1 for d in nonzero if d > 0)
    return float(stats.binomtest(wins, len(nonzero), 0.5).pvalue), "sign"


def _grade_result(g: Grade) -> GradeResult:
    return GradeResult(score=g.score, passed=g.passed, label=g.label, rationale=g.rationale, error=g.error,
                       error_message=g.error_message)


def summarize(results: Sequence[ExampleResult], graders: Sequence[GraderMeta], models: Sequence[str],
              seed: int) -> Summary:
    by_key: dict[tuple[str, str], dict[int, Grade]] = {}
    pair_grades: dict[tuple[str, str, str], list[Grade]] = {}
    model_errors = {m: 0 for m in models}
    for r in results:
        for ans in r.answers:
            if ans.error:
                model_errors[ans.model] = model_errors.get(ans.model, 0) + 1
        for g in r.grades:
            if g.against:
                pair_grades.setdefault((g.grader, g.model, g.against), []).append(g)
            else:
                by_key.setdefault((g.grader, g.model), {})[r.index] = g
    out = Summary(model_errors={m: n for m, n in model_errors.items() if n})
    for meta in graders:
        if meta.pairwise:
            _pairwise_judge(out, meta, models, pair_grades, seed)
            continue
        for model in models:
            grades = list(by_key.get((meta.name, model), {}).values())
            scored = [g.score for g in grades if g.score is not None and not g.error]
            passed = [g.passed for g in grades if g.passed is not None and not g.error]
            mean, low, high = mean_interval(scored, seed)
            extra = meta.extra([_grade_result(g) for g in grades]) if meta.extra else {}
            out.graders.append(GraderSummary(
                grader=meta.name, model=model, mean=mean, ci_low=low, ci_high=high,
                pass_rate=(sum(passed) / len(passed)) if passed else None, count=len(scored),
                errored=sum(1 for g in grades if g.error), higher_is_better=meta.higher_is_better,
                extra={k: float(v) for k, v in extra.items()}))
        for a, b in combinations(models, 2):
            sa, sb = by_key.get((meta.name, a), {}), by_key.get((meta.name, b), {})
            diffs = []
            for idx in sorted(set(sa) & set(sb)):
                ga, gb = sa[idx], sb[idx]
                if ga.score is None or gb.score is None or ga.error or gb.error:
                    continue
                d = ga.score - gb.score
                diffs.append(d if meta.higher_is_better else -d)
            out.pairs.append(_pair(meta.name, a, b, diffs, seed, *paired_test(diffs)))
    return out


def _pair(grader: str, a: str, b: str, diffs: list[float], seed: int, p: float, test: str) -> PairwiseSummary:
    mean, low, high = mean_interval(diffs, seed)
    return PairwiseSummary(
        grader=grader, model_a=a, model_b=b, wins=sum(1 for d in diffs if d > 0),
        losses=sum(1 for d in diffs if d < 0), ties=sum(1 for d in diffs if d == 0), mean_difference=mean,
        ci_low=low, ci_high=high, p_value=p, test=test, count=len(diffs))


def _pairwise_judge(out: Summary, meta: GraderMeta, models: Sequence[str],
                    pair_grades: dict[tuple[str, str, str], list[Grade]], seed: int) -> None:
    shares: dict[str, list[float]] = {m: [] for m in models}
    errored: dict[str, int] = {m: 0 for m in models}
    for a, b in combinations(models, 2):
        grades = pair_grades.get((meta.name, a, b), [])
        diffs: list[float] = []
        for g in grades:
            if g.error or g.label not in ("a", "b", "tie"):
                errored[a] += 1
                errored[b] += 1
                continue
            d = {"a": 1.0, "b": -1.0, "tie": 0.0}[g.label]
            diffs.append(d)
            shares[a].append((d + 1) / 2)
            shares[b].append((1 - d) / 2)
        wins, losses = sum(1 for d in diffs if d > 0), sum(1 for d in diffs if d < 0)
        p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
        out.pairs.append(_pair(meta.name, a, b, diffs, seed, p, "binomial"))
    for model in models:
        mean, low, high = mean_interval(shares[model], seed)
        out.graders.append(GraderSummary(
            grader=meta.name, model=model, mean=mean, ci_low=low, ci_high=high, pass_rate=None,
            count=len(shares[model]), errored=errored[model], higher_is_better=True,
            extra={}))
