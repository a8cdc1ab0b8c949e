"""The hand-labelled questions over corpus/: load, check against an index, and score.

A passage is relevant to a question when it comes from a labelled article and its
span [start, end) contains an occurrence of that article's answer text, so labels
stay valid when the chunker changes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from eval.datasets import DatasetError
from eval.metrics import mean, mrr_at_k, ndcg_at_k
from indexer.answer import answer_question
from indexer.search import MODES, Hit, SearchIndex

QUESTION_TYPES = ("factual", "paraphrase", "multi_article", "cjk", "keyword", "number_date", "unanswerable")
K = 10


@dataclass(frozen=True)
class LabelledAnswer:
    article_id: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    type: str
    answerable: bool
    answers: tuple[LabelledAnswer, ...]


def load_questions(path: Path | str) -> list[Question]:
    """Parse and validate the questions file; every problem names the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"Questions file {path} cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"Questions file {path} is not UTF-8 text (byte {exc.start}).") from None
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: malformed JSON ({exc.msg}).") from None
        question = _question(record, where)
        if question.id in seen:
            raise DatasetError(f"{where}: question id {question.id!r} appears twice.")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise DatasetError(f"{path} has no questions.")
    return questions


def _question(record: object, where: str) -> Question:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object.")
    qid, text, kind = record.get("id"), record.get("question"), record.get("type")
    answerable, answers = record.get("answerable"), record.get("answers")
    if not isinstance(qid, str) or not qid or not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: 'id' and 'question' must be non-empty strings.")
    if kind not in QUESTION_TYPES:
        raise DatasetError(f"{where}: type {kind!r} is not one of {', '.join(QUESTION_TYPES)}.")
    if not isinstance(answerable, bool) or not isinstance(answers, list):
        raise DatasetError(f"{where}: 'answerable' must be true/false and 'answers' a list.")
    if answerable != bool(answers):
        raise DatasetError(f"{where}: an answerable question needs answers; an unanswerable one must have none.")
    parsed = []
    for answer in answers:
        if not (isinstance(answer, dict) and isinstance(answer.get("article_id"), str)
                and isinstance(answer.get("text"), str) and answer["text"]):
            raise DatasetError(f"{where}: each answer needs 'article_id' and a non-empty 'text'.")
        parsed.append(LabelledAnswer(answer["article_id"], answer["text"]))
    return Question(qid, text.strip(), kind, answerable, tuple(parsed))


class AnswerLocator:
    """Where each labelled answer occurs in its article, and which chunks contain it."""

    def __init__(self, index: SearchIndex, questions: Sequence[Question]) -> None:
        self.index = index
        self.occurrences: dict[LabelledAnswer, list[int]] = {}
        for question in questions:
            for answer in question.answers:
                article = index.article(answer.article_id)
                if article is None:
                    raise DatasetError(
                        f"Question {question.id} is labelled with article {answer.article_id!r}, which is not in "
                        f"the index at {index.path}. Index corpus/ first (newsdesk index corpus/)."
                    )
                starts = _find_all(article.text, answer.text)
                if not starts:
                    raise DatasetError(
                        f"Question {question.id}: the answer text {answer.text!r} does not occur in article "
                        f"{answer.article_id}; labels must quote the article exactly."
                    )
                self.occurrences[answer] = starts

    def contains(self, answer: LabelledAnswer, article_id: str, start: int, end: int) -> bool:
        """Whether the passage [start, end) of `article_id` contains an occurrence of `answer`."""
        if article_id != answer.article_id:
            return False
        size = len(answer.text)
        return any(start <= s and s + size <= end for s in self.occurrences[answer])

    def relevant_chunks(self, question: Question) -> set[str]:
        """Ids of every indexed chunk that contains one of the question's answers."""
        store = self.index.store
        relevant = set()
        for answer in question.answers:
            position = store.article_meta[answer.article_id][0]
            for chunk in (store.chunk_article == position).nonzero()[0].tolist():
                if self.contains(answer, answer.article_id, int(store.chunk_start[chunk]), int(store.chunk_end[chunk])):
                    relevant.add(f"{answer.article_id}#{int(store.chunk_ordinal[chunk])}")
        return relevant


def score_question(question: Question, hits: Sequence[Hit], locator: AnswerLocator) -> dict[str, float]:
    """Recall@1/@5 (share of labelled answers covered), MRR@10, nDCG@10 and answer-hit@5 for one question."""
    labels = dict.fromkeys(locator.relevant_chunks(question), 1)
    ranked = [h.chunk_id for h in hits]

    def recall(k: int) -> float:
        covered = sum(
            any(locator.contains(a, h.citation.article_id, h.citation.start, h.citation.end) for h in hits[:k])
            for a in question.answers
        )
        return covered / len(question.answers)

    return {
        "recall@1": recall(1),
        "recall@5": recall(5),
        "mrr@10": mrr_at_k(ranked, labels, K),
        "ndcg@10": ndcg_at_k(ranked, labels, K),
        "answer_hit@5": float(any(a.text in h.text for h in hits[:5] for a in question.answers)),
    }


METRICS = ("recall@1", "recall@5", "mrr@10", "ndcg@10", "answer_hit@5")


def evaluate_labelled(
    index: SearchIndex, questions: Sequence[Question], modes: Sequence[str] = MODES, progress: bool = True
) -> dict[str, object]:
    """Per-mode retrieval metrics over the answerable questions, per type too, plus the abstention check."""
    locator = AnswerLocator(index, questions)
    answerable = [q for q in questions if q.answerable]
    results: dict[str, object] = {}
    per_question: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        scores = {}
        for question in tqdm(answerable, desc=f"Questions {mode}", unit="q", disable=not progress, file=sys.stderr):
            scores[question.id] = score_question(question, index.search(question.question, k=K, mode=mode), locator)
        per_question[mode] = scores
        by_type = {
            kind: _averages([scores[q.id] for q in answerable if q.type == kind])
            for kind in QUESTION_TYPES
            if any(q.type == kind for q in answerable)
        }
        results[mode] = {**_averages(list(scores.values())), "by_type": by_type}
    return {
        "questions": len(questions),
        "answerable": len(answerable),
        "types": {kind: sum(q.type == kind for q in questions) for kind in QUESTION_TYPES},
        "results": results,
        "abstention": abstention_check(index, questions),
        "per_question": per_question,
    }


def abstention_check(index: SearchIndex, questions: Sequence[Question]) -> dict[str, object]:
    """What the Q&A path (`answer_question`, as /ask uses it) does with answerable and unanswerable questions."""
    from eval.answers import LabelledQuestion, labelled_metrics

    answers = [answer_question(index, q.question) for q in questions]
    outcomes = {q.id: a.answerable for q, a in zip(questions, answers, strict=True)}
    unanswerable = [q.id for q in questions if not q.answerable]
    answerable = [q.id for q in questions if q.answerable]
    quality = labelled_metrics(
        answers,
        [LabelledQuestion(q.id, q.question, q.type, q.answerable, tuple((a.article_id, a.text) for a in q.answers))
         for q in questions],
    )
    return {
        "unanswerable_abstained": sum(not outcomes[q] for q in unanswerable),
        "unanswerable": len(unanswerable),
        "answerable_answered": sum(outcomes[q] for q in answerable),
        "answerable": len(answerable),
        "wrongly_answered": [q for q in unanswerable if outcomes[q]],
        # answer accuracy: answerable questions whose cited sentences contain a labelled answer text
        "answer_accuracy": quality["answer_accuracy"],
        "abstention_precision": quality["abstention_precision"],
        "abstention_recall": quality["abstention_recall"],
    }


def _averages(rows: list[dict[str, float]]) -> dict[str, float]:
    return {metric: mean(row[metric] for row in rows) for metric in METRICS} | {"n": len(rows)}


def _find_all(text: str, needle: str) -> list[int]:
    starts, at = [], text.find(needle)
    while at != -1:
        starts.append(at)
        at = text.find(needle, at + 1)
    return starts
