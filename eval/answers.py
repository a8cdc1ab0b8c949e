"""Measure question answering: cited answer sentences and abstention.

Two measurements, both through `indexer.answer` (the code `/ask` and `newsdesk ask` use):

- hand-labelled (eval/questions.jsonl over corpus/): answer accuracy = share of answerable
  questions whose cited sentences contain a labelled answer text (in the labelled article);
  abstention precision and recall on the unanswerable ones (`labelled_metrics`);
- realtimeqa (news-quiz questions over 5,008 evidence paragraphs): share of questions whose
  answer sentences contain the gold answer text (`realtimeqa_metrics`). Tuning uses the dev
  split only; test is reported.

`python -m eval.answers` runs everything (`eval.qa_run.run`), prints the Markdown report
(`eval.qa_report`) and writes eval/results/qa/{report.md,results.json}. The realtimeqa indexes
take minutes to build on a small CPU, so they are built once under `--cache` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.answer import Answer, AnswerConfig, compose
from indexer.search import Hit, SearchIndex
from indexer.sentence_scoring import ScoredSentence, apply_weights, score_sentences

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
    hits = index.search(question, k=config.candidates, mode="hybrid", config=config.retrieval)
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
            say(f"  {label}: {i}/{len(questions)} questions ({time.perf_counter() - started:.0f}s)")
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
        "answer_accuracy": share_of(correct, len(answerable)),
        "accuracy_when_answered": share_of(correct, answered),
        "answered": answered,
        "abstained": abstained,
        "abstention_precision": share_of(abstained_right, abstained),
        "abstention_recall": share_of(abstained_right, len(unanswerable)),
        "multi_article_all_cited": share_of(
            sum({art for art, _ in q.answers} <= {c.article_id for c in a.citations} for a, q in multi), len(multi)
        ),
        "by_type": {t: share_of(sum(v), len(v)) for t, v in sorted(by_type.items())},
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
        "answer_in_sentences": share_of(sum(contains_gold(a, q) for a, q in zip(answers, questions, strict=True)), n),
        "answer_in_sentences_never_abstaining": share_of(
            sum(contains_gold(a, q) for a, q in zip(ungated, questions, strict=True)), n
        ),
        "answer_in_first_sentence_never_abstaining": share_of(top_sentence, n),
        "abstained": share_of(sum(not a.answerable for a in answers), n),
        "abstained_but_right_if_answered": share_of(
            sum(contains_gold(u, q) for a, u, q in zip(answers, ungated, questions, strict=True) if not a.answerable),
            sum(not a.answerable for a in answers),
        ),
        "evidence_paragraph_retrieved": share_of(
            sum(
                bool(set(q.paragraphs) & {h.citation.article_id for h in r.hits})
                for q, r in zip(questions, retrieved, strict=True)
            ),
            n,
        ),
        "answer_in_retrieved_passages": share_of(
            sum(
                any(normalise(t) in normalise(h.text) for t in q.answers for h in r.hits)
                for q, r in zip(questions, retrieved, strict=True)
            ),
            n,
        ),
        "answer_in_evidence_paragraph": share_of(
            sum(
                any(normalise(t) in normalise(paragraphs.get(p, "")) for t in q.answers for p in q.paragraphs)
                for q in questions
            ),
            n,
        ),
        "mean_sentences": _mean(len({(c.article_id, c.start) for c in a.citations}) for a in answers if a.answerable),
    }


def share_of(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 3) if values else None


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    from eval.qa_report import render_markdown
    from eval.qa_run import run

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
