"""BM25 over chunk texts (bm25s), with our own analysis so CJK and stemming behave."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from indexer.analysis import analyze

logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalIndex:
    """BM25 scores of every chunk for a query; rows align with the vector index."""

    def __init__(self, retriever: bm25s.BM25, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> LexicalIndex:
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        with _quiet():
            retriever.index([analyze(text) for text in texts], show_progress=False)
        return cls(retriever, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk (zeros where no term matches)."""
        terms = analyze(query)
        if not terms or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(terms), dtype=np.float32)

    def document_frequencies(self, terms: Sequence[str]) -> np.ndarray:
        """How many chunks contain each analysed term (0 for a term the index has never seen)."""
        vocab = self._retriever.vocab_dict
        indptr = self._retriever.scores["indptr"]
        counts = np.zeros(len(terms), dtype=np.int64)
        for i, term in enumerate(terms):
            column = vocab.get(term)
            if column is not None and column + 1 < len(indptr):
                counts[i] = int(indptr[column + 1] - indptr[column])
        return counts

    def ceiling(self, query: str) -> float:
        """The BM25 score of a chunk that held every query term at saturation: the sum of their idf.

        bm25s's "lucene" variant scores a term idf * tf / (tf + k1 * length norm), which tends
        to idf as tf grows (no (k1 + 1) factor), so every chunk's score is below this and
        score / ceiling is how much of the query (idf-weighted) the chunk matches, in [0, 1]
        and comparable across queries and corpora, unlike raw BM25. Terms the index has never
        seen add nothing, as they add nothing to any score.
        """
        terms = analyze(query)
        if not terms or self.size == 0:
            return 0.0
        df = self.document_frequencies(terms)
        df = df[df > 0].astype(np.float64)
        # bm25s "lucene" idf; a repeated query term counts once per occurrence, as in get_scores
        return float(np.log(1.0 + (self.size - df + 0.5) / (df + 0.5)).sum())

    def save(self, directory: Path) -> None:
        with _quiet():
            self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, size: int) -> LexicalIndex:
        with _quiet():
            retriever = bm25s.BM25.load(str(directory), show_progress=False, mmap=False)
        return cls(retriever, size)


@contextlib.contextmanager
def _quiet():  # type: ignore[no-untyped-def]
    """bm25s prints progress and notices to stdout/stderr; keep our output clean."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
