"""Ranking metrics: hand-computed cases, then a cross-check against pytrec_eval (trec_eval)."""

import math
import random

import numpy as np
import pytest

from eval.metrics import dcg, mean, mrr_at_k, ndcg_at_k, percentile, recall_at_k


def test_dcg_discounts_by_log2_of_rank_plus_one():
    assert dcg([]) == 0
    assert dcg([1, 1, 1]) == pytest.approx(1 + 1 / math.log2(3) + 0.5)


def test_ndcg_binary_by_hand():
    # Relevant at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) = 1.63093.
    assert ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.5 / 1.6309298, rel=1e-6)


def test_ndcg_graded_by_hand():
    # Ranked [b(1), a(2)]: DCG = 1 + 2/log2(3) = 2.26186; ideal [a, b] = 2 + 1/log2(3) = 2.63093.
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx(2.2618595 / 2.6309298, rel=1e-6)


def test_ndcg_cut_and_edge_cases():
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0  # relevant doc below the cut
    assert ndcg_at_k(["a"], {"a": 1, "b": 1, "c": 1}, 1) == 1.0  # ideal is cut at k too
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 0}, 10) == 0.0  # nothing relevant: 0, not a division by zero
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)


def test_recall_by_hand():
    labels = {"a": 1, "b": 2, "c": 0}  # c is judged but not relevant
    assert recall_at_k(["a", "c", "z"], labels, 2) == 0.5
    assert recall_at_k(["z", "b", "a"], labels, 3) == 1.0
    assert recall_at_k(["c"], labels, 10) == 0.0
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0


def test_mrr_by_hand():
    assert mrr_at_k(["x", "y", "a"], {"a": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert mrr_at_k(["a", "b"], {"a": 1, "b": 1}, 10) == 1.0
    assert mrr_at_k(["c", "b"], {"c": 0, "b": 1}, 10) == 0.5


def test_mean_and_percentile():
    assert mean([]) == 0.0 and mean([1, 2, 3, 4]) == 2.5
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) == 0.0
    data = [random.Random(1).random() for _ in range(101)]
    for q in (0, 12.5, 50, 95, 100):
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_metrics_agree_with_pytrec_eval():
    """Random graded qrels and runs: our means equal trec_eval's to 1e-9."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(60)]
    qrels, runs = {}, {}
    for q in range(40):
        judged = rng.sample(docs, rng.randint(1, 12))
        labels = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        labels[judged[0]] = max(labels[judged[0]], 1)  # at least one relevant per query
        ranked = rng.sample(docs, rng.randint(5, 50))
        qrels[f"q{q}"] = labels
        # Distinct descending scores, so trec_eval's tie-breaking cannot reorder the run.
        runs[f"q{q}"] = ranked
    measures = {"ndcg_cut.10", "recall.10", "recall.100", "recip_rank"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures)
    as_run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in runs.items()}
    theirs = evaluator.evaluate(as_run)
    # trec_eval's recip_rank has no cut; evaluate it on the top 10 only to compare with MRR@10.
    top10 = {q: {d: float(10 - i) for i, d in enumerate(r[:10])} for q, r in runs.items()}
    theirs_rr10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for q, ranked in runs.items():
        assert ndcg_at_k(ranked, qrels[q], 10) == pytest.approx(theirs[q]["ndcg_cut_10"], abs=1e-9)
        assert recall_at_k(ranked, qrels[q], 10) == pytest.approx(theirs[q]["recall_10"], abs=1e-9)
        assert recall_at_k(ranked, qrels[q], 100) == pytest.approx(theirs[q]["recall_100"], abs=1e-9)
        assert mrr_at_k(ranked, qrels[q], 10) == pytest.approx(theirs_rr10[q]["recip_rank"], abs=1e-9)
    assert any(theirs[q]["ndcg_cut_10"] not in (0.0, 1.0) for q in runs)  # the sample exercises real cases


def test_paired_comparison():
    from eval.compare import compare

    rng = random.Random(3)
    base = {f"q{i}": rng.random() for i in range(200)}
    same = compare(base, dict(base))
    assert same.mean_diff == 0 and same.p_value == 1.0 and same.wins == same.losses == 0
    better = {q: min(1.0, s + 0.1) for q, s in base.items()}
    shifted = compare(base, better, rounds=2000)
    expected = sum(better[q] - base[q] for q in base) / len(base)
    assert shifted.mean_diff == pytest.approx(expected)
    assert shifted.ci_low <= expected <= shifted.ci_high and shifted.ci_low > 0
    assert shifted.p_value < 0.01 and shifted.losses == 0
    noise = {q: s + rng.choice([-0.01, 0.01]) for q, s in base.items()}
    assert compare(base, noise, rounds=2000).p_value > 0.05  # coin-flip changes are not "better" (seeded)
    with pytest.raises(ValueError):
        compare(base, {"q0": 1.0})
