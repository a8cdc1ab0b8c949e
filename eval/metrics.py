"""Ranking metrics over one query's ranked ids and its graded relevance labels.

Pure functions, the same definitions as trec_eval (and so BEIR): a label > 0 is
relevant, nDCG uses gain = label and discount log2(rank + 1), the ideal ranking is
the labels sorted, and a query with no relevant document scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain of gains in rank order (rank 1 first)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, 1))


def ndcg_at_k(ranked: Sequence[str], labels: Mapping[str, int], k: int) -> float:
    """nDCG@k: DCG of the top k against the DCG of the best possible top k."""
    ideal = dcg(sorted((g for g in labels.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(max(labels.get(doc, 0), 0) for doc in ranked[:k]) / ideal


def recall_at_k(ranked: Sequence[str], labels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    relevant = {doc for doc, grade in labels.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], labels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top k (0 if none)."""
    for rank, doc in enumerate(ranked[:k], 1):
        if labels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; 0.0 for no values (an empty run has nothing to report)."""
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks, like numpy's default."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
