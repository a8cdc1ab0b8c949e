"""Answer a question from the articles (placeholder: the best passage; see the Q&A issue)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from indexer.search import Hit, SearchIndex


@dataclass(frozen=True)
class AnswerCitation:
    article_id: str
    title: str
    source: str | None
    date: str | None
    url: str | None
    start: int
    end: int
    quote: str


@dataclass
class Answer:
    question: str
    answer: str
    answerable: bool
    confidence: float
    citations: list[AnswerCitation] = field(default_factory=list)
    passages: list[Hit] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "answer": self.answer,
            "answerable": self.answerable,
            "confidence": self.confidence,
            "citations": [asdict(c) for c in self.citations],
            "passages": [h.to_dict() for h in self.passages],
        }


def answer_question(index: SearchIndex, question: str, k: int = 5) -> Answer:
    """The best passage as the answer, cited; `k` passages returned alongside."""
    hits = index.search(question, k=k, mode="hybrid")
    if not hits:
        return Answer(question, "Not found in the articles.", False, 0.0, [], [])
    best = hits[0]
    c = best.citation
    citation = AnswerCitation(c.article_id, c.title, c.source, c.date, c.url, c.start, c.end, best.text)
    return Answer(question, f"{best.text} [1]", True, float(best.score), [citation], hits)
