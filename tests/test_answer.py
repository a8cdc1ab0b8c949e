"""Answers quoted from the articles (fake embedder): exact quotes, markers, abstention, corroboration."""

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from indexer.answer import NOT_FOUND, AnswerConfig, answer_question, compose, select_groups
from indexer.errors import InvalidQuery
from indexer.search import Citation, Hit, SearchIndex
from indexer.sentence_scoring import ScoredSentence, SentenceWeights
from tests.conftest import DAIMLER, XIAOMI_BLOOMBERG, XIAOMI_HT

ALWAYS_ANSWER = AnswerConfig(threshold=-math.inf)
QUESTIONS = [
    "Which company did Daimler team up with for Denza?",
    "How much has Xiaomi's co-founder Lei Jun pledged to invest in electric vehicles?",
    "Which carmakers have held talks with Beijing Automotive Group?",
    "When was the HT Auto story first published?",
    "比亞迪",
    "北京新能源汽車",
]


def _markers(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"\[(\d+)\]", text)]


@pytest.mark.parametrize("question", QUESTIONS)
def test_every_quote_slices_its_article_exactly(fake_index: SearchIndex, question: str):
    answer = answer_question(fake_index, question, k=3, config=ALWAYS_ANSWER)
    assert answer.answerable and answer.citations
    for citation in answer.citations:
        article = fake_index.article(citation.article_id)
        assert article is not None
        assert article.text[citation.start : citation.end] == citation.quote
        assert citation.quote.strip() == citation.quote and citation.quote
        assert citation.title == article.title and citation.source == article.source
    # Markers are [1]..[n] in reading order, one per citation, and the answer quotes the cited text.
    assert _markers(answer.answer) == list(range(1, len(answer.citations) + 1))
    sentences = re.split(r"\s*(?:\[\d+\])+\s*", answer.answer)
    assert all(s in {" ".join(c.quote.split()) for c in answer.citations} for s in sentences if s)
    assert 1 <= len([s for s in sentences if s]) <= 3
    assert len(answer.passages) <= 3


def test_to_dict_has_the_contract_fields(fake_index: SearchIndex):
    data = answer_question(fake_index, "Denza nameplate", k=2, config=ALWAYS_ANSWER).to_dict()
    assert set(data) == {"question", "answer", "answerable", "confidence", "citations", "passages"}
    citation = data["citations"][0]
    assert set(citation) == {"article_id", "title", "source", "date", "url", "start", "end", "quote"}
    assert {"rank", "score", "chunk_id", "text", "citation", "highlights"} <= set(data["passages"][0])
    assert 0.0 <= data["confidence"] <= 1.0


def test_unanswerable_question_abstains_and_still_returns_passages(fake_index: SearchIndex):
    answer = answer_question(fake_index, "Who won the football World Cup final in Bern in 1954?", k=4)
    assert answer.answerable is False
    assert answer.answer == NOT_FOUND and answer.citations == []
    assert 1 <= len(answer.passages) <= 4
    assert answer.confidence < 0.5


def test_abstention_follows_the_threshold(fake_index: SearchIndex):
    question = "Which company did Daimler team up with for Denza?"
    refused = answer_question(fake_index, question, config=AnswerConfig(threshold=10.0))
    assert not refused.answerable and refused.answer == NOT_FOUND and refused.passages
    answered = answer_question(fake_index, question, config=AnswerConfig(threshold=0.0))
    assert answered.answerable and answered.confidence > refused.confidence


def test_cjk_question_quotes_the_sentence_with_the_name(fake_index: SearchIndex):
    answer = answer_question(fake_index, "比亞迪", k=3)
    assert answer.answerable
    assert answer.citations[0].article_id == DAIMLER and "比亞迪" in answer.citations[0].quote


def test_empty_question_is_rejected(fake_index: SearchIndex):
    with pytest.raises(InvalidQuery):
        answer_question(fake_index, "   ")


# --- composition rules on hand-made sentences (no index needed) -------------------------------


def _sentence(article: str, start: int, score: float, vector: list[float], text: str | None = None) -> ScoredSentence:
    text = text or f"Sentence of {article} at {start}."
    citation = Citation(article, f"Title {article}", "Src", "2022-01-01", None, start, start + len(text))
    hit = Hit(1, 1.0, f"{article}#0", text, citation)
    v = np.asarray(vector, dtype=np.float32)
    return ScoredSentence(
        article,
        start,
        start + len(text),
        text,
        hit,
        dense=0.0,
        lexical=0.0,
        passage=1.0,
        vector=v / np.linalg.norm(v),
        score=score,
    )


def test_the_same_fact_in_two_articles_is_cited_twice_and_said_once():
    config = AnswerConfig(threshold=0.3, keep_ratio=0.9, corroboration=0.8)
    pledge_a = _sentence("a", 100, 0.9, [1, 0.1, 0], "Lei Jun pledged around $10 billion.")
    pledge_b = _sentence("b", 40, 0.8, [1, 0.2, 0], "Lei Jun will invest about $10 billion.")
    other = _sentence("a", 10, 0.5, [0, 0, 1])
    answer = compose("q", [other, pledge_b, pledge_a], [], config)
    assert answer.answer == "Lei Jun pledged around $10 billion. [1][2]"
    assert [c.article_id for c in answer.citations] == ["a", "b"]
    assert answer.citations[1].quote == "Lei Jun will invest about $10 billion."


def test_disagreeing_articles_both_appear_in_reading_order():
    config = AnswerConfig(threshold=0.3, keep_ratio=0.8, corroboration=0.95)
    late = _sentence("a", 500, 0.85, [1, 0, 0], "First car next year.")
    early = _sentence("a", 20, 0.80, [0.6, 0.8, 0], "Xiaomi wants its own cars.")
    other_article = _sentence("b", 60, 0.9, [0, 1, 0], "First car by 2024.")
    groups = select_groups(sorted([late, early, other_article], key=lambda s: -s.score), config)
    # Article b holds the best sentence so it comes first; article a's sentences in document order.
    assert [(g[0].article_id, g[0].start) for g in groups] == [("b", 60), ("a", 20), ("a", 500)]


def test_repeated_text_is_not_quoted_twice_and_low_scores_are_left_out():
    config = AnswerConfig(threshold=0.3, keep_ratio=0.9, max_sentences=3)
    first = _sentence("a", 0, 0.9, [1, 0, 0], "Repeated paragraph.")
    again = _sentence("a", 300, 0.9, [1, 0, 0], "Repeated paragraph.")
    weak = _sentence("a", 100, 0.5, [0, 1, 0])
    groups = select_groups([first, again, weak], config)
    assert [[s.start for s in g] for g in groups] == [[0]]


def test_at_most_max_sentences():
    config = AnswerConfig(threshold=0.0, keep_ratio=0.0, max_sentences=2, corroboration=0.99)
    sentences = [_sentence("a", i * 10, 1 - i / 10, np.eye(5)[i].tolist()) for i in range(5)]
    assert len(select_groups(sentences, config)) == 2


def test_confidence_is_one_half_at_the_threshold():
    config = AnswerConfig(threshold=0.6, confidence_slope=10.0, weights=SentenceWeights(1, 0, 0))
    assert config.confidence(0.6) == pytest.approx(0.5)
    assert config.confidence(0.9) > 0.9 > 0.1 > config.confidence(0.3)
    assert replace(config, confidence_slope=1.0).confidence(0.9) < config.confidence(0.9)


def test_sentences_from_both_xiaomi_articles_are_candidates(fake_index: SearchIndex):
    from indexer.sentence_scoring import score_sentences

    question = "Lei Jun $10 billion"
    hits = fake_index.search(question, k=10)
    sentences = score_sentences(fake_index, question, hits)
    pledges = [s for s in sentences if "10 billion" in s.text]
    assert {s.article_id for s in pledges} >= {XIAOMI_BLOOMBERG, XIAOMI_HT}
    for s in sentences:
        assert 0.0 <= s.dense <= 1.0 and 0.0 <= s.lexical <= 1.0
        assert fake_index.article(s.article_id).text[s.start : s.end] == s.text
    assert max(s.lexical for s in pledges) == pytest.approx(1.0)


def test_cjk_questions_move_the_dense_weight_to_the_lexical_side():
    from indexer.sentence_scoring import apply_weights, is_mostly_cjk

    assert is_mostly_cjk("戴姆勒和比亞迪合作的品牌是什麼？") and is_mostly_cjk("比亞迪")
    assert not is_mostly_cjk("Who backs BYD (比亞迪)?") and not is_mostly_cjk("123 ?")
    english = _sentence("a", 0, 0.0, [1, 0])
    chinese = _sentence("a", 0, 0.0, [1, 0])
    for s in (english, chinese):
        s.dense, s.lexical, s.passage = 0.2, 1.0, 0.5
    chinese.dense_trusted = False
    apply_weights([english, chinese], SentenceWeights(0.5, 0.3, 0.2))
    assert english.score == pytest.approx(0.5 * 0.2 + 0.3 * 1.0 + 0.2 * 0.5)
    assert chinese.score == pytest.approx(0.8 * 1.0 + 0.2 * 0.5)


def test_a_corroborating_sentence_may_score_below_the_threshold_but_a_new_one_may_not():
    config = AnswerConfig(threshold=0.7, keep_ratio=0.9, corroboration=0.8, corroboration_ratio=0.8)
    best = _sentence("a", 0, 0.8, [1, 0.1, 0], "Lei Jun pledged $10 billion.")
    same_fact = _sentence("b", 0, 0.66, [1, 0.2, 0], "Lei Jun will invest $10 billion.")  # 0.66 >= 0.8 * 0.8
    unrelated = _sentence("c", 0, 0.69, [0, 0, 1], "Something else entirely.")  # below the threshold
    faint = _sentence("d", 0, 0.6, [1, 0.15, 0], "Lei Jun, $10 billion.")  # same fact, too weak
    groups = select_groups([best, unrelated, same_fact, faint], config)
    assert [[s.article_id for s in g] for g in groups] == [["a", "b"]]
