"""Score the sentences of retrieved passages against a question.

Each candidate sentence gets three features, all roughly in [0, 1]:

- ``dense``: cosine between the question's and the sentence's embedding (the index's model);
- ``lexical``: the IDF-weighted share of the question's terms that the sentence contains
  (same analysis as BM25, so stemming and CJK bigrams behave; IDF from the index, so a
  name that appears in no article weighs heavily against every sentence);
- ``passage``: the hybrid retrieval score of the best passage the sentence sits in.

`SentenceWeights` combines them linearly; the answer composer only sees the combined score.
Features are kept separate so evaluation can re-weight cached features without re-embedding.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.analysis import analyze
from indexer.search import Hit, SearchIndex
from indexer.sentences import split_sentences

# Leading list and table decoration ("- ", "• ", "| ") is not part of what a sentence says;
# trimming it keeps quotes clean while still slicing the article exactly.
_DECORATION = "-\u2013\u2014\u2022*|>#"
_WORD_RE = re.compile(r"\w+")
FEATURES_VERSION = 2  # bump when a feature's definition changes (evaluation caches features on disk)
MIN_WORDS = 3  # "By : HT Auto Desk" style bylines and lone headings say nothing quotable


@dataclass(frozen=True)
class SentenceWeights:
    """Linear weights of the three sentence features."""

    dense: float = 0.6  # defaults tuned on realtimeqa dev (eval/qa_calibration.py)
    lexical: float = 0.1
    passage: float = 0.3


@dataclass
class ScoredSentence:
    """A sentence of an article, addressed by character offsets into the article text."""

    article_id: str
    start: int
    end: int
    text: str
    hit: Hit  # the best-ranked retrieved passage containing the sentence (for its citation metadata)
    dense: float
    lexical: float
    passage: float
    vector: np.ndarray
    dense_trusted: bool = True  # False for a question the embedding model cannot read (CJK script)
    score: float = 0.0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.article_id, self.start, self.end)


class _VectorCache:
    """Bounded LRU of sentence vectors: the same sentences come back for related questions."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str, int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int, int]) -> np.ndarray | None:
        with self._lock:
            vector = self._data.get(key)
            if vector is not None:
                self._data.move_to_end(key)
            return vector

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def put(self, key: tuple[str, str, int, int], vector: np.ndarray) -> None:
        with self._lock:
            self._data[key] = vector
            while len(self._data) > self.size:
                self._data.popitem(last=False)


_VECTORS = _VectorCache()


def clear_sentence_cache() -> None:
    """Forget cached sentence vectors (for cold-cache latency measurements)."""
    _VECTORS.clear()


def score_sentences(index: SearchIndex, question: str, hits: Sequence[Hit]) -> list[ScoredSentence]:
    """Every quotable sentence of the `hits` passages with its features (score not yet set)."""
    spans = _candidate_spans(index, hits)
    if not spans:
        return []
    query_vector = index.embed_query(question)
    vectors = _sentence_vectors(index, spans)
    dense = np.clip(vectors @ query_vector, 0.0, 1.0)
    idf = _idf(index, question)
    dense_trusted = not is_mostly_cjk(question)
    return [
        ScoredSentence(
            article_id=hit.citation.article_id,
            start=start,
            end=end,
            text=text,
            hit=hit,
            dense=float(dense[i]),
            lexical=_coverage(idf, text),
            passage=float(hit.score),
            vector=vectors[i],
            dense_trusted=dense_trusted,
        )
        for i, (hit, start, end, text) in enumerate(spans)
    ]


def apply_weights(sentences: Sequence[ScoredSentence], weights: SentenceWeights) -> None:
    """Set each sentence's combined score.

    all-MiniLM-L6-v2 was trained on English: for a question written mostly in CJK script its
    cosine says little, so the dense weight moves to the lexical side (CJK bigrams), which does
    match names such as 比亞迪 exactly.
    """
    for s in sentences:
        dense, lexical = (weights.dense, weights.lexical) if s.dense_trusted else (0.0, weights.dense + weights.lexical)
        s.score = dense * s.dense + lexical * s.lexical + weights.passage * s.passage


def is_mostly_cjk(text: str) -> bool:
    """Whether at least half of the letters of `text` are CJK ideographs, kana or hangul."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum(_has_cjk(ch) for ch in letters) * 2 >= len(letters)


def _candidate_spans(index: SearchIndex, hits: Sequence[Hit]) -> list[tuple[Hit, int, int, str]]:
    """(hit, start, end, text) of each sentence overlapping a passage, once, best passage first."""
    seen: set[tuple[str, int, int]] = set()
    articles: dict[str, list[tuple[int, int]]] = {}
    texts: dict[str, str] = {}
    spans: list[tuple[Hit, int, int, str]] = []
    for hit in hits:
        c = hit.citation
        if c.article_id not in articles:
            article = index.article(c.article_id)
            if article is None:  # the store lost the article: skip it rather than quote nothing
                continue
            texts[c.article_id] = article.text
            articles[c.article_id] = split_sentences(article.text)
        text = texts[c.article_id]
        for start, end in articles[c.article_id]:
            if end <= c.start or start >= c.end:
                continue
            start, end = _trim_decoration(text, start, end)
            sentence = text[start:end]
            if len(_WORD_RE.findall(sentence)) < MIN_WORDS and not _has_cjk(sentence):
                continue
            if (c.article_id, start, end) in seen:
                continue
            seen.add((c.article_id, start, end))
            spans.append((hit, start, end, sentence))
    return spans


def _trim_decoration(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and (text[start] in _DECORATION or text[start].isspace()):
        start += 1
    return start, end


def _has_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" for ch in text)


def _sentence_vectors(index: SearchIndex, spans: Sequence[tuple[Hit, int, int, str]]) -> np.ndarray:
    """Embeddings of the sentences, from the cache where possible, the rest in one batch."""
    keys = [(index.index_id, hit.citation.article_id, start, end) for hit, start, end, _ in spans]
    vectors: list[np.ndarray | None] = [_VECTORS.get(key) for key in keys]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        fresh = index.embedder.embed([spans[i][3] for i in missing])
        for row, i in enumerate(missing):
            vectors[i] = fresh[row]
            _VECTORS.put(keys[i], fresh[row])
    return np.vstack(vectors).astype(np.float32)  # type: ignore[arg-type]


def _idf(index: SearchIndex, question: str) -> dict[str, float]:
    """Lucene BM25 IDF of each distinct question term over the index's chunks."""
    terms = list(dict.fromkeys(analyze(question)))
    if not terms:
        return {}
    total = index.store.chunk_count
    frequencies = index.lexical.document_frequencies(terms)
    return {
        term: math.log(1 + (total - int(df) + 0.5) / (int(df) + 0.5))
        for term, df in zip(terms, frequencies, strict=True)
        # CJK text is indexed as overlapping bigrams, so a question yields bigrams that straddle
        # its words ("和比" in "戴姆勒和比亞迪"); one the corpus has never seen is an artefact of the
        # split, not a missing word, and must not count against every sentence.
        if df > 0 or not _has_cjk(term)
    }


def _coverage(idf: dict[str, float], sentence: str) -> float:
    """IDF-weighted share of the question's terms found in the sentence."""
    total = sum(idf.values())
    if total <= 0:
        return 0.0
    present = set(analyze(sentence))
    return sum(weight for term, weight in idf.items() if term in present) / total
