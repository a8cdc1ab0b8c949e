"""Choose the Q&A settings: feature weights (realtimeqa dev), answerable threshold and confidence slope (hand-labelled).

Deliberately small rules, so 51 hand-labelled questions cannot be over-fitted:

- weights: a coarse grid (steps of 0.1, summing to 1, every weight at least 0.1) and a few
  passage-pool sizes, scored by the share of realtimeqa *dev* questions whose best sentence
  contains the gold answer; the best weights win, then the smallest pool within half a point of
  the best (fewer sentences to embed per question). The floor keeps every signal alive: on dev
  alone the lexical weight drifts to zero within noise, yet it is what matches names in CJK
  questions and what notices a name the articles never mention;
- threshold: one number on one score (the best sentence's combined score); the cut between two
  neighbouring scores of the hand-labelled set that maximises balanced accuracy (mean of "answered
  when answerable" and "abstained when not"), ties broken by the widest gap, placed at the gap's midpoint;
- confidence: a logistic curve fixed at 0.5 on the threshold; only its slope is fitted (maximum
  likelihood over a grid) to whether each hand-labelled answer was right.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from indexer.answer import AnswerConfig
from indexer.sentence_scoring import SentenceWeights

WEIGHT_STEP = 0.1
MIN_WEIGHT = 0.1
POOL_TOLERANCE = 0.005  # half a percentage point of dev questions
POOL_SIZES = (5, 10, 20)
SLOPES = tuple(float(s) for s in range(1, 61))


@dataclass(frozen=True)
class Threshold:
    value: float
    balanced_accuracy: float
    margin: float  # width of the score gap the threshold sits in


def weight_grid(step: float = WEIGHT_STEP, floor: float = MIN_WEIGHT) -> list[SentenceWeights]:
    """Every (dense, lexical, passage) on the step grid, summing to 1, each at least `floor`."""
    steps, low = round(1 / step), round(floor / step)
    grid = []
    for d, lex in itertools.product(range(low, steps + 1), range(low, steps + 1)):
        p = steps - d - lex
        if p >= low:
            grid.append(SentenceWeights(round(d * step, 3), round(lex * step, 3), round(p * step, 3)))
    return grid


def tune_weights(
    evaluate: Callable[[AnswerConfig], float], base: AnswerConfig, pools: Sequence[int] = POOL_SIZES
) -> tuple[AnswerConfig, list[tuple[float, AnswerConfig]]]:
    """The chosen config (weights, pool size) by `evaluate`, and the whole table, best first."""
    table = []
    for pool in sorted(pools):
        for weights in weight_grid():
            config = replace(base, weights=weights, candidates=pool)
            table.append((evaluate(config), config))
    ranked = sorted(table, key=lambda row: -row[0])  # stable: equal scores keep grid order
    weights = ranked[0][1].weights
    same_weights = [(score, c) for score, c in table if c.weights == weights]
    top = max(score for score, _ in same_weights)
    chosen = min((c for score, c in same_weights if score >= top - POOL_TOLERANCE), key=lambda c: c.candidates)
    return chosen, ranked


def choose_threshold(scores: Sequence[float], answerable: Sequence[bool]) -> Threshold:
    """The cut on the best-sentence score that best separates answerable from unanswerable questions."""
    ordered = sorted(set(scores))
    cuts = [(low, high) for low, high in zip(ordered, ordered[1:], strict=False)]
    if not cuts:
        return Threshold(ordered[0] if ordered else 0.0, 0.5, 0.0)
    positives = sum(answerable) or 1
    negatives = (len(answerable) - sum(answerable)) or 1
    best: Threshold | None = None
    for low, high in cuts:
        cut = (low + high) / 2
        hit = sum(s >= cut for s, a in zip(scores, answerable, strict=True) if a) / positives
        reject = sum(s < cut for s, a in zip(scores, answerable, strict=True) if not a) / negatives
        candidate = Threshold(round(cut, 4), round((hit + reject) / 2, 4), round(high - low, 4))
        if best is None or (candidate.balanced_accuracy, candidate.margin) > (best.balanced_accuracy, best.margin):
            best = candidate
    assert best is not None
    return best


def fit_slope(scores: Sequence[float], correct: Sequence[bool], threshold: float) -> float:
    """Slope of the logistic confidence curve (0.5 at `threshold`) that best predicts `correct`."""

    def log_likelihood(slope: float) -> float:
        total = 0.0
        for score, ok in zip(scores, correct, strict=True):
            p = 1.0 / (1.0 + math.exp(-slope * (score - threshold)))
            p = min(max(p, 1e-6), 1 - 1e-6)
            total += math.log(p if ok else 1 - p)
        return total

    return max(SLOPES, key=log_likelihood)


def calibration_table(confidences: Sequence[float], correct: Sequence[bool], bins: int = 5) -> list[dict[str, float]]:
    """Reliability bins: mean confidence vs share correct, for the report."""
    rows = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            ok for c, ok in zip(confidences, correct, strict=True) if low <= c < high or (b == bins - 1 and c == 1.0)
        ]
        confs = [c for c in confidences if low <= c < high or (b == bins - 1 and c == 1.0)]
        if members:
            rows.append(
                {
                    "bin": f"{low:.1f}-{high:.1f}",
                    "n": len(members),
                    "mean_confidence": round(sum(confs) / len(confs), 3),
                    "share_correct": round(sum(members) / len(members), 3),
                }
            )
    return rows


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Weighted mean |confidence - accuracy| over equal-width bins."""
    n = len(confidences)
    if not n:
        return 0.0
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if idx:
            conf = sum(confidences[i] for i in idx) / len(idx)
            acc = sum(correct[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(conf - acc)
    return round(total, 4)
