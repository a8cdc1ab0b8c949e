"""Answer a question with sentences quoted from the articles, each one cited.

Pipeline: hybrid retrieval of candidate passages -> every sentence of those passages
scored against the question (`indexer.sentence_scoring`) -> the best one to three
sentences, grouped by article in reading order, each followed by its markers
(`[1]`, `[1][2]` when a second article reports the same fact) -> or, when the best
sentence scores below the calibrated threshold, an explicit "not in the articles"
with the closest passages still returned.

Calibration (eval/README.md, section "Q&A"; re-derived by `python -m eval.answers`):
the feature weights (0.6 dense, 0.1 lexical, 0.3 passage) and the pool of 5 passages were
tuned on the realtimeqa dev split (share of questions whose first answer sentence contains
the gold answer; every weight kept >= 0.1). The answerable threshold (0.6366) is the cut on the
best sentence's score that maximises balanced accuracy between the answerable and unanswerable
questions of the hand-labelled set (eval/questions.jsonl), placed mid-gap; confidence is a
logistic curve equal to 0.5 at that threshold, its slope (9) fitted by maximum likelihood to
whether each hand-labelled answer was right (both with the packaged model, before the retrieval
adapter; kept since, see eval/README.md). The corroboration and keep ratios are set by hand; the
corroboration cosine and ratio were re-set for the adapter, whose sentence similarities spread wider.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from indexer.adapter import is_tuned
from indexer.search import Filters, Hit, SearchConfig, SearchIndex, validate_question
from indexer.sentence_scoring import ScoredSentence, SentenceWeights, apply_weights, score_sentences

NOT_FOUND = "The articles do not contain an answer to this question."
# Corroboration (cosine to the answer sentence, share of the best score), set by hand per model
# on corpus/ (eval/README.md, Q&A): the adapter spreads sentence similarities wider.
CORROBORATION = {"tuned": (0.73, 0.75), "base": (0.8, 0.8)}


@dataclass(frozen=True)
class AnswerConfig:
    """How answers are composed and when the service abstains (calibrated defaults)."""

    candidates: int = 5  # passages whose sentences are scored (tuned on realtimeqa dev)
    weights: SentenceWeights = field(default_factory=SentenceWeights)
    threshold: float = 0.6366  # best sentence score below this -> answerable: false (hand-labelled set)
    confidence_slope: float = 9.0  # logistic slope of confidence around the threshold (hand-labelled set)
    max_sentences: int = 3
    keep_ratio: float = 0.9  # a further sentence must score at least this share of the best
    # Cosine between sentences of two articles that state the same fact, and the share of the best
    # score such a sentence needs: the tuned model's values (`for_model` picks the base model's).
    corroboration: float = CORROBORATION["tuned"][0]
    corroboration_ratio: float = CORROBORATION["tuned"][1]
    duplicate: float = 0.95  # cosine above which two sentences of one article are the same text repeated
    # The retrieval the weights and threshold above were calibrated on: min-max fusion, dense
    # weight 0.5. Search's default fusion changed since (issue 7, "additive"), whose scores have
    # another scale; /ask keeps this one until its calibration is re-run (eval/README.md).
    retrieval: SearchConfig = field(default_factory=lambda: SearchConfig(fusion="convex", alpha=0.5))

    def for_model(self, model_id: str) -> AnswerConfig:
        """These settings for an index built with `model_id`: the base model keeps its own corroboration cut."""
        if is_tuned(model_id) or (self.corroboration, self.corroboration_ratio) != CORROBORATION["tuned"]:
            return self  # the tuned model, or settings someone chose
        cosine, ratio = CORROBORATION["base"]
        return replace(self, corroboration=cosine, corroboration_ratio=ratio)

    def confidence(self, score: float) -> float:
        """Probability-like confidence for a best-sentence score: 0.5 exactly at the threshold."""
        return 1.0 / (1.0 + math.exp(-self.confidence_slope * (score - self.threshold)))


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


def answer_question(
    index: SearchIndex,
    question: str,
    k: int = 5,
    filters: Filters | None = None,
    config: AnswerConfig | None = None,
) -> Answer:
    """Answer `question` from the articles with cited sentences; `k` closest passages returned alongside."""
    validate_question(question)  # errors name the question, not the search's "q"
    config = (config or AnswerConfig()).for_model(index.manifest.model_id)
    hits = index.search(question, k=max(k, config.candidates), mode="hybrid", filters=filters, config=config.retrieval)
    sentences = score_sentences(index, question.strip(), hits[: config.candidates])
    apply_weights(sentences, config.weights)
    return compose(question, sentences, hits[:k], config)


def compose(question: str, sentences: list[ScoredSentence], passages: list[Hit], config: AnswerConfig) -> Answer:
    """The answer built from already scored sentences (split out so evaluation can re-weight cheaply)."""
    ranked = sorted(sentences, key=lambda s: (-s.score, s.article_id, s.start))
    if not ranked:
        return Answer(question, NOT_FOUND, False, 0.0, [], passages)
    best = ranked[0]
    confidence = round(config.confidence(best.score), 4)
    if best.score < config.threshold:
        return Answer(question, NOT_FOUND, False, confidence, [], passages)
    groups = select_groups(ranked, config)
    text, citations = _render(groups)
    return Answer(question, text, True, confidence, citations, passages)


def select_groups(ranked: list[ScoredSentence], config: AnswerConfig) -> list[list[ScoredSentence]]:
    """Up to `max_sentences` groups, each a sentence plus the sentences of other articles that corroborate it.

    A sentence joins as a new answer sentence when it clears the threshold and scores within
    `keep_ratio` of the best. A sentence of another article that says the same thing as an answer
    sentence (embedding cosine >= `corroboration`) is cited alongside it instead of being repeated;
    saying the same thing is itself evidence, so it only needs `corroboration_ratio` of the best score.
    """
    best = ranked[0].score
    new_floor = max(config.threshold, config.keep_ratio * best)
    support_floor = config.corroboration_ratio * best
    groups: list[list[ScoredSentence]] = [[ranked[0]]]
    for sentence in ranked[1:]:
        if sentence.score < min(new_floor, support_floor):
            break
        if any(
            s.article_id == sentence.article_id and float(sentence.vector @ s.vector) >= config.duplicate
            for group in groups
            for s in group
        ):
            continue  # the same text again in one article (a repeated paragraph)
        similarities = [float(sentence.vector @ group[0].vector) for group in groups]
        group = groups[similarities.index(max(similarities))]
        if max(similarities) >= config.corroboration:
            if sentence.score >= support_floor and sentence.article_id not in {s.article_id for s in group}:
                group.append(sentence)  # another article says the same: cite it, do not repeat it
            continue
        if sentence.score >= new_floor and len(groups) < config.max_sentences:
            groups.append([sentence])
    return _reading_order(groups)


def _reading_order(groups: list[list[ScoredSentence]]) -> list[list[ScoredSentence]]:
    """Groups by article (the article of the best group first), in document order inside an article."""
    article_rank: dict[str, int] = {}
    for group in groups:
        article_rank.setdefault(group[0].article_id, len(article_rank))
    return sorted(groups, key=lambda g: (article_rank[g[0].article_id], g[0].start))


def _render(groups: list[list[ScoredSentence]]) -> tuple[str, list[AnswerCitation]]:
    """The answer text with a marker per cited sentence, and the citations the markers point to."""
    parts: list[str] = []
    citations: list[AnswerCitation] = []
    for group in groups:
        markers = []
        for sentence in group:
            c = sentence.hit.citation
            citations.append(
                AnswerCitation(
                    c.article_id, c.title, c.source, c.date, c.url, sentence.start, sentence.end, sentence.text
                )
            )
            markers.append(f"[{len(citations)}]")
        parts.append(f"{' '.join(group[0].text.split())} {''.join(markers)}")
    return " ".join(parts), citations
