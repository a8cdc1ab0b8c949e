"""The Q&A evaluation run: indexes (built once, cached), calibration, measurement, latency."""

from __future__ import annotations

import hashlib
import math
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from eval.answers import (
    REPO,
    GoldQuestion,
    Retrieved,
    cites_answer,
    compose_from,
    contains_gold,
    labelled_metrics,
    load_labelled,
    load_realtimeqa,
    normalise,
    realtimeqa_metrics,
    retrieve_all,
    say,
    share_of,
)
from eval.qa_calibration import (
    POOL_SIZES,
    calibration_table,
    choose_threshold,
    expected_calibration_error,
    fit_slope,
    tune_weights,
)
from indexer.answer import AnswerConfig, answer_question
from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import Embedder
from indexer.search import SearchIndex
from indexer.sentence_scoring import FEATURES_VERSION, clear_sentence_cache


def seed_index(embedder: Embedder, root: Path) -> SearchIndex:
    """corpus/ indexed under `root` (small: built every run)."""
    articles, _ = load_corpus(REPO / "corpus")
    build_index(articles, root, embedder, progress=False)
    return SearchIndex.load(root, embedder)


def realtimeqa_index(name: str, articles: Callable[[], list[Article]], cache: Path, embedder: Embedder) -> SearchIndex:
    """The index `cache/name`, built from `articles()` the first time (minutes on a small CPU)."""
    root = cache / name
    if not (root / "CURRENT").is_file():
        say(f"Building realtimeqa index {root} (once; reused afterwards) ...")
        build_index(articles(), root, embedder, progress=False)
    return SearchIndex.load(root, embedder)


def realtimeqa_articles(data_dir: Path, only: set[str] | None = None) -> list[Article]:
    """The paragraph corpus, optionally only the paragraphs in `only`."""
    articles, _ = load_corpus(data_dir / "corpus.jsonl")
    return [a for a in articles if only is None or a.article_id in only]


def cached_retrieve(
    index: SearchIndex, questions: Sequence[str], config: AnswerConfig, cache: Path, label: str
) -> list[Retrieved]:
    """`retrieve_all`, kept on disk per (label, index build, pool size, questions) for re-runs."""
    digest = hashlib.sha256("\n".join(questions).encode("utf-8")).hexdigest()[:12]
    path = cache / f"retrieved-{label}-{index.index_id}-{config.candidates}-v{FEATURES_VERSION}-{digest}.pkl"
    if path.is_file():
        with open(path, "rb") as handle:
            return pickle.load(handle)  # our own cache file, written below
    retrieved = retrieve_all(index, questions, config, label)
    cache.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(retrieved, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return retrieved


# ---------------------------------------------------------------- latency


def measure_latency(index: SearchIndex, questions: Sequence[str], config: AnswerConfig) -> dict[str, float]:
    """In-process `answer_question` wall time per question (ms), sentence cache cold, model warm."""
    clear_sentence_cache()
    answer_question(index, "warm-up question about the news", config=config)
    clear_sentence_cache()
    timings = []
    for question in questions:
        started = time.perf_counter()
        answer_question(index, question, config=config)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "questions": len(timings),
        "median_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[min(len(timings) - 1, math.ceil(0.95 * len(timings)) - 1)], 1),
        "max_ms": round(timings[-1], 1),
    }


# ---------------------------------------------------------------- the run


def run(data_dir: Path, cache: Path, limit: int | None, proxy: bool, tune: bool) -> dict[str, object]:
    """Calibrate, measure and time; returns everything the report shows."""
    from indexer.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    shipped = AnswerConfig()
    probe = replace(shipped, candidates=max(POOL_SIZES))
    ungate = -math.inf
    results: dict[str, object] = {"shipped_config": _config_dict(shipped)}

    # realtimeqa dev: tune the weights and the pool size (dev only).
    with_rtqa = data_dir.is_dir()
    if with_rtqa:
        full = realtimeqa_index("full", lambda: realtimeqa_articles(data_dir), cache, embedder)
        dev = load_realtimeqa(data_dir, "dev")[:limit]
        dev_r = cached_retrieve(full, [q.question for q in dev], probe, cache, "dev")

        def first_sentence_share(config: AnswerConfig) -> float:
            config = replace(config, threshold=ungate)
            hits = 0
            for r, q in zip(dev_r, dev, strict=True):
                answer, _ = compose_from(r, config)
                hits += bool(answer.citations) and any(
                    normalise(t) in normalise(answer.citations[0].quote) for t in q.answers
                )
            return hits / len(dev)

        if tune:
            tuned, table = tune_weights(first_sentence_share, shipped)
            results["weight_tuning_dev_top10"] = [
                {"share": round(s, 4), "candidates": c.candidates, **vars(c.weights)} for s, c in table[:10]
            ]
        else:
            tuned = shipped
        results["tuned_on_dev"] = {"candidates": tuned.candidates, **vars(tuned.weights)}
    else:
        say(f"{data_dir} not found: skipping realtimeqa (pass --realtimeqa DIR)")
        tuned = shipped

    # Hand-labelled: the threshold and the confidence slope, with the tuned weights.
    labelled = load_labelled()
    with tempfile.TemporaryDirectory() as tmp:
        seed_root = Path(tmp) / "index"
        seed = seed_index(embedder, seed_root)
        lab_r = retrieve_all(seed, [q.question for q in labelled], probe, "labelled")
        open_answers = [compose_from(r, replace(tuned, threshold=ungate)) for r in lab_r]
        scores = [best for _, best in open_answers]
        threshold = choose_threshold(scores, [q.answerable for q in labelled])
        correct = [q.answerable and cites_answer(a, q) for (a, _), q in zip(open_answers, labelled, strict=True)]
        slope = fit_slope(scores, correct, threshold.value)
        recalibrated = replace(tuned, threshold=threshold.value, confidence_slope=slope)
        results["recalibrated_config"] = _config_dict(recalibrated)
        results["recalibrated_equals_shipped"] = _config_dict(recalibrated) == _config_dict(shipped)
        results["threshold_choice"] = vars(threshold)
        results["labelled_best_scores"] = [
            {"id": q.id, "type": q.type, "answerable": q.answerable, "best_score": round(s, 4), "correct": ok}
            for q, s, ok in zip(labelled, scores, correct, strict=True)
        ]
        answers = [compose_from(r, shipped)[0] for r in lab_r]
        results["labelled"] = labelled_metrics(answers, labelled)
        results["labelled_never_abstaining"] = labelled_metrics(
            [a for a, _ in (compose_from(r, replace(shipped, threshold=ungate)) for r in lab_r)], labelled
        )
        results["latency_seed_corpus"] = measure_latency(
            SearchIndex.load(seed_root, embedder), [q.question for q in labelled], shipped
        )

    if with_rtqa:
        paragraphs = {a.article_id: a.text for a in realtimeqa_articles(data_dir)}
        results["realtimeqa_dev"] = _realtimeqa_split(dev, dev_r, shipped, paragraphs)
        test = load_realtimeqa(data_dir, "test")[:limit]
        test_r = cached_retrieve(full, [q.question for q in test], probe, cache, "test")
        results["realtimeqa_test"] = _realtimeqa_split(test, test_r, shipped, paragraphs)
        # Confidence is a claim about the best answer, so it is checked against the answer that
        # would be given without abstaining.
        opened = [compose_from(r, replace(shipped, threshold=ungate)) for r in dev_r]
        confidences = [shipped.confidence(best) for _, best in opened]
        dev_ok = [contains_gold(a, q) for (a, _), q in zip(opened, dev, strict=True)]
        results["realtimeqa_dev_confidence"] = {
            "ece": expected_calibration_error(confidences, dev_ok),
            "bins": calibration_table(confidences, dev_ok),
        }
        if proxy:
            results["realtimeqa_evidence_removed"] = _evidence_removed(
                data_dir, cache, embedder, dev, test, shipped, probe
            )
        results["latency_realtimeqa"] = measure_latency(
            SearchIndex.load(cache / "full", embedder), [q.question for q in test[:200]], shipped
        )
    return results


def _realtimeqa_split(
    questions: list[GoldQuestion], retrieved: list[Retrieved], config: AnswerConfig, paragraphs: dict[str, str]
) -> dict[str, object]:
    pool = [replace(r, hits=r.hits[: config.candidates]) for r in retrieved]
    answers = [compose_from(r, config)[0] for r in retrieved]
    ungated = [compose_from(r, replace(config, threshold=-math.inf))[0] for r in retrieved]
    return realtimeqa_metrics(answers, ungated, questions, pool, paragraphs)


def _evidence_removed(
    data_dir: Path,
    cache: Path,
    embedder: Embedder,
    dev: list[GoldQuestion],
    test: list[GoldQuestion],
    shipped: AnswerConfig,
    probe: AnswerConfig,
) -> dict[str, object]:
    """Abstention when each split's own evidence paragraphs are left out of the index.

    Dev questions are asked of an index of the test-era paragraphs and vice versa. Most then have
    no answer in the index (a proxy for unanswerable questions; some news recurs, so not all).
    """
    dev_ids = {p for q in load_realtimeqa(data_dir, "dev") for p in q.paragraphs}
    test_ids = {p for q in load_realtimeqa(data_dir, "test") for p in q.paragraphs}
    out: dict[str, object] = {}
    for label, questions, keep in (("dev", dev, test_ids - dev_ids), ("test", test, dev_ids - test_ids)):
        index = realtimeqa_index(
            f"without-{label}", lambda keep=keep: realtimeqa_articles(data_dir, keep), cache, embedder
        )
        retrieved = cached_retrieve(index, [q.question for q in questions], probe, cache, f"{label}-without-evidence")
        answers = [compose_from(r, shipped)[0] for r in retrieved]
        out[label] = {
            "questions": len(questions),
            "abstained": share_of(sum(not a.answerable for a in answers), len(questions)),
            "answered_with_gold_text": share_of(
                sum(contains_gold(a, q) for a, q in zip(answers, questions, strict=True)), len(questions)
            ),
        }
    return out


def _config_dict(config: AnswerConfig) -> dict[str, object]:
    data = {k: v for k, v in vars(config).items() if k not in ("weights", "retrieval")}
    return {**data, "weights": vars(config.weights), "retrieval": vars(config.retrieval)}
