"""Measure question answering: cited answer sentences and abstention.

Two measurements, both through `indexer.answer` (the code `/ask` and `newsdesk ask` use):

- hand-labelled (eval/questions.jsonl over corpus/): answer accuracy = share of answerable
  questions whose cited sentences contain a labelled answer text (in the labelled article);
  abstention precision and recall on the unanswerable ones;
- realtimeqa (news-quiz questions over 5,008 evidence paragraphs): share of questions whose
  answer sentences contain the gold answer text. Tuning uses the dev split only; test is reported.

`python -m eval.answers` prints a Markdown report and writes eval/results/qa/{report.md,results.json}.
The realtimeqa indexes take minutes to build on a small CPU, so they are built once under
`--cache` and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from eval.qa_calibration import (
    POOL_SIZES,
    calibration_table,
    choose_threshold,
    expected_calibration_error,
    fit_slope,
    tune_weights,
)
from indexer.answer import Answer, AnswerConfig, answer_question, compose
from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import Embedder
from indexer.search import Hit, SearchIndex
from indexer.sentence_scoring import (
    FEATURES_VERSION,
    ScoredSentence,
    apply_weights,
    clear_sentence_cache,
    score_sentences,
)

REPO = Path(__file__).resolve().parent.parent
LABELLED = REPO / "eval" / "questions.jsonl"
RESULTS = REPO / "eval" / "results" / "qa"
DEFAULT_REALTIMEQA = Path("../shared/data/realtimeqa")
DEFAULT_CACHE = Path(".newsdesk/eval-cache/realtimeqa")


@dataclass(frozen=True)
class LabelledQuestion:
    id: str
    question: str
    type: str
    answerable: bool
    answers: tuple[tuple[str, str], ...]  # (article_id, exact answer text)


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    paragraphs: tuple[str, ...]  # the quiz's own evidence paragraph(s)


@dataclass
class Retrieved:
    """A question's candidate passages and scored sentences, computed once, composed many times."""

    question: str
    hits: list[Hit]
    sentences: list[ScoredSentence]


# ---------------------------------------------------------------- data


def load_labelled(path: Path = LABELLED) -> list[LabelledQuestion]:
    """The hand-labelled questions; answers are exact substrings of the named articles."""
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        answers = tuple((a["article_id"], a["text"]) for a in row.get("answers", []))
        if row["answerable"] and not answers:
            raise ValueError(f"{path}:{number}: an answerable question needs at least one answer")
        questions.append(LabelledQuestion(row["id"], row["question"], row["type"], bool(row["answerable"]), answers))
    return questions


def load_realtimeqa(data_dir: Path, split: str) -> list[GoldQuestion]:
    """Questions of one qrels split with their gold answer texts and evidence paragraphs."""
    paragraphs: dict[str, list[str]] = {}
    with open(data_dir / "qrels" / f"{split}.tsv", encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            query_id, corpus_id, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                paragraphs.setdefault(query_id, []).append(corpus_id)
    questions = []
    with open(data_dir / "answers.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["_id"] in paragraphs:
                texts = tuple(t for t in row["answer_text"] if t.strip())
                questions.append(GoldQuestion(row["_id"], row["question"], texts, tuple(paragraphs[row["_id"]])))
    return questions


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form used for 'contains the answer' checks."""
    return " ".join(text.casefold().split())


# ---------------------------------------------------------------- answering


def retrieve(index: SearchIndex, question: str, config: AnswerConfig) -> Retrieved:
    """Candidate passages and sentence features for `question` (the expensive part of answering)."""
    hits = index.search(question, k=config.candidates, mode="hybrid")
    return Retrieved(question, hits, score_sentences(index, question.strip(), hits))


def compose_from(retrieved: Retrieved, config: AnswerConfig, k: int = 5) -> tuple[Answer, float]:
    """The answer `answer_question` would give with `config`, and its best sentence score.

    The pool is cut to the sentences of the first `config.candidates` passages, which is what
    answering with that pool size would have scored (a sentence keeps its best-ranked passage).
    """
    pool = [s for s in retrieved.sentences if s.hit.rank <= config.candidates]
    apply_weights(pool, config.weights)
    best = max((s.score for s in pool), default=0.0)
    return compose(retrieved.question, pool, retrieved.hits[:k], config), best


def retrieve_all(index: SearchIndex, questions: Sequence[str], config: AnswerConfig, label: str) -> list[Retrieved]:
    out = []
    started = time.perf_counter()
    for i, question in enumerate(questions, 1):
        out.append(retrieve(index, question, config))
        if i % 250 == 0:
            _say(f"  {label}: {i}/{len(questions)} questions ({time.perf_counter() - started:.0f}s)")
    return out


# ---------------------------------------------------------------- metrics


def cites_answer(answer: Answer, question: LabelledQuestion) -> bool:
    """Whether a cited sentence contains a labelled answer text from the labelled article."""
    return any(
        c.article_id == article_id and text in c.quote
        for c in answer.citations
        for article_id, text in question.answers
    )


def labelled_metrics(answers: Sequence[Answer], questions: Sequence[LabelledQuestion]) -> dict[str, object]:
    """Answer accuracy, abstention precision/recall, and the same broken down by question type."""
    answerable = [(a, q) for a, q in zip(answers, questions, strict=True) if q.answerable]
    unanswerable = [a for a, q in zip(answers, questions, strict=True) if not q.answerable]
    correct = sum(cites_answer(a, q) for a, q in answerable)
    answered = sum(a.answerable for a, _ in answerable)
    abstained_right = sum(not a.answerable for a in unanswerable)
    abstained = abstained_right + (len(answerable) - answered)
    multi = [(a, q) for a, q in answerable if len({art for art, _ in q.answers}) > 1]
    by_type: dict[str, list[bool]] = {}
    for a, q in zip(answers, questions, strict=True):
        ok = cites_answer(a, q) if q.answerable else not a.answerable
        by_type.setdefault(q.type, []).append(ok)
    return {
        "questions": len(questions),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "answer_accuracy": _share(correct, len(answerable)),
        "accuracy_when_answered": _share(correct, answered),
        "answered": answered,
        "abstained": abstained,
        "abstention_precision": _share(abstained_right, abstained),
        "abstention_recall": _share(abstained_right, len(unanswerable)),
        "multi_article_all_cited": _share(
            sum({art for art, _ in q.answers} <= {c.article_id for c in a.citations} for a, q in multi), len(multi)
        ),
        "by_type": {t: _share(sum(v), len(v)) for t, v in sorted(by_type.items())},
        "mean_sentences": _mean(len({(c.article_id, c.start) for c in a.citations}) for a in answers if a.answerable),
    }


def contains_gold(answer: Answer, gold: GoldQuestion) -> bool:
    """Whether the answer's cited sentences contain a gold answer text (case/space-insensitive)."""
    quotes = [normalise(c.quote) for c in answer.citations]
    return any(normalise(t) in q for t in gold.answers for q in quotes)


def realtimeqa_metrics(
    answers: Sequence[Answer],
    ungated: Sequence[Answer],
    questions: Sequence[GoldQuestion],
    retrieved: Sequence[Retrieved],
    paragraphs: dict[str, str],
) -> dict[str, object]:
    """Answer-in-sentences share (abstention counts as a miss), plus what bounds it."""
    n = len(questions)
    top_sentence = sum(
        any(normalise(t) in normalise(a.citations[0].quote) for t in q.answers)
        for a, q in zip(ungated, questions, strict=True)
        if a.citations
    )
    return {
        "questions": n,
        "answer_in_sentences": _share(sum(contains_gold(a, q) for a, q in zip(answers, questions, strict=True)), n),
        "answer_in_sentences_never_abstaining": _share(
            sum(contains_gold(a, q) for a, q in zip(ungated, questions, strict=True)), n
        ),
        "answer_in_first_sentence_never_abstaining": _share(top_sentence, n),
        "abstained": _share(sum(not a.answerable for a in answers), n),
        "abstained_but_right_if_answered": _share(
            sum(contains_gold(u, q) for a, u, q in zip(answers, ungated, questions, strict=True) if not a.answerable),
            sum(not a.answerable for a in answers),
        ),
        "evidence_paragraph_retrieved": _share(
            sum(
                bool(set(q.paragraphs) & {h.citation.article_id for h in r.hits})
                for q, r in zip(questions, retrieved, strict=True)
            ),
            n,
        ),
        "answer_in_retrieved_passages": _share(
            sum(
                any(normalise(t) in normalise(h.text) for t in q.answers for h in r.hits)
                for q, r in zip(questions, retrieved, strict=True)
            ),
            n,
        ),
        "answer_in_evidence_paragraph": _share(
            sum(
                any(normalise(t) in normalise(paragraphs.get(p, "")) for t in q.answers for p in q.paragraphs)
                for q in questions
            ),
            n,
        ),
        "mean_sentences": _mean(len({(c.article_id, c.start) for c in a.citations}) for a in answers if a.answerable),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 3) if values else None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- indexes


def seed_index(embedder: Embedder, root: Path) -> SearchIndex:
    """corpus/ indexed under `root` (small: built every run)."""
    articles, _ = load_corpus(REPO / "corpus")
    build_index(articles, root, embedder, progress=False)
    return SearchIndex.load(root, embedder)


def realtimeqa_index(name: str, articles: Callable[[], list[Article]], cache: Path, embedder: Embedder) -> SearchIndex:
    """The index `cache/name`, built from `articles()` the first time (minutes on a small CPU)."""
    root = cache / name
    if not (root / "CURRENT").is_file():
        _say(f"Building realtimeqa index {root} (once; reused afterwards) ...")
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
        _say(f"{data_dir} not found: skipping realtimeqa (pass --realtimeqa DIR)")
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
            "abstained": _share(sum(not a.answerable for a in answers), len(questions)),
            "answered_with_gold_text": _share(
                sum(contains_gold(a, q) for a, q in zip(answers, questions, strict=True)), len(questions)
            ),
        }
    return out


def _config_dict(config: AnswerConfig) -> dict[str, object]:
    data = {k: v for k, v in vars(config).items() if k != "weights"}
    return {**data, "weights": vars(config.weights)}


# ---------------------------------------------------------------- report


def render_markdown(results: dict[str, object]) -> str:
    """The results as the Markdown report (also the table kept in eval/README.md)."""
    lines = ["# Q&A evaluation", ""]
    lab = results["labelled"]
    never = results["labelled_never_abstaining"]
    lines += [
        "## Hand-labelled questions (eval/questions.jsonl over corpus/)",
        "",
        "| measure | shipped threshold | never abstaining |",
        "|---|---|---|",
        f"| answer accuracy ({lab['answerable']} answerable) | {_pct(lab['answer_accuracy'])} | "
        f"{_pct(never['answer_accuracy'])} |",
        f"| accuracy when answered | {_pct(lab['accuracy_when_answered'])} | {_pct(never['accuracy_when_answered'])} |",
        f"| abstention precision | {_pct(lab['abstention_precision'])} | - |",
        f"| abstention recall ({lab['unanswerable']} unanswerable) | {_pct(lab['abstention_recall'])} | - |",
        f"| multi-article questions citing every labelled article | {_pct(lab['multi_article_all_cited'])} | "
        f"{_pct(never['multi_article_all_cited'])} |",
        f"| mean answer sentences | {lab['mean_sentences']} | {never['mean_sentences']} |",
        "",
        "By type (answerable: answer cited; unanswerable: abstained): "
        + ", ".join(f"{t} {_pct(v)}" for t, v in lab["by_type"].items()),
        "",
    ]
    choice = results["threshold_choice"]
    lines += [
        f"Threshold {choice['value']} (balanced accuracy {_pct(choice['balanced_accuracy'])} on the labelled set, "
        f"score gap {choice['margin']}); recalibrating now gives the shipped settings: "
        f"{'yes' if results['recalibrated_equals_shipped'] else 'NO, see results.json'}.",
        "",
    ]
    if "realtimeqa_dev" in results:
        dev, test = results["realtimeqa_dev"], results["realtimeqa_test"]
        rows = [
            ("answer sentences contain the gold answer (abstaining = miss)", "answer_in_sentences"),
            ("same, never abstaining", "answer_in_sentences_never_abstaining"),
            ("first answer sentence contains it, never abstaining", "answer_in_first_sentence_never_abstaining"),
            ("abstained", "abstained"),
            ("of those, answer sentences would have contained it", "abstained_but_right_if_answered"),
            ("ceiling: gold answer text in a retrieved passage", "answer_in_retrieved_passages"),
            ("ceiling: gold answer text in the quiz's evidence paragraph", "answer_in_evidence_paragraph"),
            ("evidence paragraph among the scored passages", "evidence_paragraph_retrieved"),
        ]
        lines += [
            "## realtimeqa (5,008 evidence paragraphs; weights tuned on dev only)",
            "",
            f"| measure | dev ({dev['questions']}) | test ({test['questions']}) |",
            "|---|---|---|",
            *[f"| {name} | {_pct(dev[key])} | {_pct(test[key])} |" for name, key in rows],
            f"| mean answer sentences | {dev['mean_sentences']} | {test['mean_sentences']} |",
            "",
        ]
        if "realtimeqa_evidence_removed" in results:
            removed = results["realtimeqa_evidence_removed"]
            lines += [
                "Evidence removed (each split asked of an index without its own era's paragraphs, a proxy for "
                f"unanswerable questions): abstained on {_pct(removed['dev']['abstained'])} of dev and "
                f"{_pct(removed['test']['abstained'])} of test questions.",
                "",
            ]
        conf = results["realtimeqa_dev_confidence"]
        lines += [
            f"Confidence vs 'answer sentences contain the gold answer' on dev: ECE {conf['ece']}; "
            + "; ".join(
                f"{b['bin']}: n={b['n']}, conf {b['mean_confidence']}, correct {b['share_correct']}"
                for b in conf["bins"]
            ),
            "",
        ]
    machine = results.get("machine", {})
    lines += [
        "## In-process answer latency (model warm, sentence cache cold)",
        "",
        f"{machine.get('cpus', '?')} CPUs, torch threads {machine.get('torch_threads', '?')}, "
        f"load average at the end of the run {machine.get('load_average_1m', '?')} "
        "(the machine is shared: other jobs inflate these numbers).",
        "",
        "| corpus | questions | median | p95 |",
        "|---|---|---|---|",
    ]
    for name, key in (
        ("corpus/ (3 articles)", "latency_seed_corpus"),
        ("realtimeqa (5,008 paragraphs)", "latency_realtimeqa"),
    ):
        if key in results:
            lat = results[key]
            lines.append(f"| {name} | {lat['questions']} | {lat['median_ms']} ms | {lat['p95_ms']} ms |")
    config = results["shipped_config"]
    lines += ["", f"Settings: {json.dumps(config)}", ""]
    return "\n".join(lines)


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m eval.answers`: measure, print the report, write eval/results/qa/."""
    parser = argparse.ArgumentParser(prog="python -m eval.answers", description=__doc__.splitlines()[0])
    parser.add_argument("--realtimeqa", type=Path, default=DEFAULT_REALTIMEQA, help="realtimeqa data directory")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="where the realtimeqa indexes and retrieval results are kept between runs",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="report directory (default eval/results/qa)")
    parser.add_argument("--limit", type=int, help="only the first N realtimeqa questions of each split (smoke runs)")
    parser.add_argument("--no-tune", dest="tune", action="store_false", help="skip the weight grid on dev")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a busy 2-core machine two threads thrash)",
    )
    parser.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="skip the evidence-removed abstention check (builds two more indexes)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads)
    results = run(args.realtimeqa, args.cache, args.limit, args.proxy, args.tune)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "torch_threads": args.torch_threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    report = render_markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(report, encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
