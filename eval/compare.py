"""Is one run better than another on the same queries? Paired bootstrap and sign-flip test.

    python -m eval.compare eval/results/x/results.json "hybrid[convex:0.5]" [OTHER ...]

reads the per-query nDCG@10 that `newsdesk bench --per-query` records.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PER_QUERY = "per_query_ndcg@10"


@dataclass(frozen=True)
class Comparison:
    """other - base over the shared queries: mean difference, its 95% bootstrap interval, two-sided p."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int


def compare(base: Mapping[str, float], other: Mapping[str, float], rounds: int = 10_000, seed: int = 0) -> Comparison:
    """Paired comparison of two runs' per-query scores (the same query ids in both)."""
    if set(base) != set(other) or not base:
        raise ValueError("both runs need scores for the same, non-empty set of queries")
    queries = sorted(base)
    diff = np.array([other[q] - base[q] for q in queries])
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    # Under "no difference" each query's difference is as likely negative as positive.
    null = (rng.choice([-1.0, 1.0], size=(rounds, len(diff))) * diff).mean(axis=1)
    observed = abs(diff.mean())
    p_value = float((np.sum(np.abs(null) >= observed - 1e-12) + 1) / (rounds + 1))
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    return Comparison(float(diff.mean()), float(low), float(high), p_value, wins, losses)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = json.loads(Path(args[0]).read_text(encoding="utf-8"))["results"]
    base, others = args[1], args[2:] or [label for label in results if label != args[1]]
    missing = [label for label in [base, *others] if PER_QUERY not in results.get(label, {})]
    if missing:
        print(f"No per-query scores for {', '.join(missing)}; run newsdesk bench with --per-query.", file=sys.stderr)
        return 2
    for label in others:
        c = compare(results[base][PER_QUERY], results[label][PER_QUERY])
        print(
            f"{label} - {base}: {c.mean_diff:+.4f} nDCG@10, 95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], "
            f"p={c.p_value:.4f}, better on {c.wins} queries, worse on {c.losses}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
