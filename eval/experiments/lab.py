"""The retrieval pipeline re-implemented over cached vectors, so one ablation takes seconds.

`Lab(dataset, cache)` holds a dataset's documents, chunk layout, chunk and query vectors
(from eval.experiments.cache). Score matrices are computed for all queries of a split at
once (queries x chunks, dense and BM25), and each ranking idea is a small function of them.
`Lab.check_against_index` verifies that the baseline here reproduces `newsdesk bench`.

Not shipped: the winning ideas are implemented in indexer/ and tested there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from eval.datasets import load_documents, load_qrels, load_queries
from eval.metrics import ndcg_at_k, recall_at_k
from indexer.analysis import analyze

DATA = Path("/work/shared/data")
CACHE = Path("/work/cache/quality")


@dataclass
class Lexicon:
    """A BM25 index as a sparse term x unit weight matrix (lucene idf, like bm25s 'lucene')."""

    vocab: dict[str, int]
    weights: sp.csr_matrix  # terms x units: idf * tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))
    ceiling_weights: np.ndarray  # per term: idf * (k1 + 1), the most one occurrence-saturated term can add

    @classmethod
    def build(
        cls,
        texts: Sequence[Sequence[str]],
        k1: float = 1.2,
        b: float = 0.75,
        vocab: dict[str, int] | None = None,
    ) -> Lexicon:
        vocab = dict(vocab or {})
        rows, cols = [], []
        for unit, terms in enumerate(texts):
            for term in terms:
                rows.append(vocab.setdefault(term, len(vocab)))
                cols.append(unit)
        tf = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(vocab), len(texts))
        )
        tf.sum_duplicates()
        lengths = np.asarray(tf.sum(axis=0)).ravel()
        avg = lengths.mean() if len(lengths) else 1.0
        df = np.diff(tf.indptr)
        idf = np.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
        tf = tf.tocoo()
        norm = k1 * (1 - b + b * lengths[tf.col] / avg)
        data = idf[tf.row] * tf.data * (k1 + 1) / (tf.data + norm)
        weights = sp.csr_matrix((data, (tf.row, tf.col)), shape=tf.shape)
        return cls(vocab, weights, idf * (k1 + 1))

    def query_matrix(self, queries: Sequence[Sequence[str]], weights: Sequence[dict[str, float]] | None = None):
        """queries x terms counts (or given weights); unknown terms dropped."""
        rows, cols, vals = [], [], []
        for i, terms in enumerate(queries):
            pairs = weights[i].items() if weights is not None else ((t, 1.0) for t in terms)
            for term, value in pairs:
                j = self.vocab.get(term)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(value)
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(queries), len(self.vocab)))

    def ceiling(self, queries: Sequence[Sequence[str]], weights=None) -> np.ndarray:
        """Per query: the BM25 score of a document that saturates every query term."""
        return np.asarray(self.query_matrix(queries, weights) @ self.ceiling_weights).ravel()

    def scores(self, queries: Sequence[Sequence[str]], weights=None) -> np.ndarray:
        return np.asarray((self.query_matrix(queries, weights) @ self.weights).todense(), dtype=np.float32)


@dataclass
class Split:
    name: str
    query_ids: list[str]
    texts: list[str]
    qrels: dict[str, dict[str, int]]
    rows: np.ndarray  # rows of the cached query vectors


@dataclass
class Lab:
    dataset: str
    cache: str
    documents: list = field(init=False)
    doc_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        root = DATA / self.dataset
        self.documents = load_documents(root / "corpus.jsonl")
        self.doc_ids = [d.article_id for d in self.documents]
        self.cache_dir = CACHE / self.dataset / self.cache
        layout = np.load(self.cache_dir / "chunks.npz")
        self.chunk_doc, self.chunk_start, self.chunk_end = layout["doc"], layout["start"], layout["end"]
        self.vectors = np.load(self.cache_dir / "vectors.npy")
        self.query_vectors = np.load(self.cache_dir / "queries.npy")
        self.query_ids = json.loads((self.cache_dir / "query_ids.json").read_text())
        self.queries = load_queries(root / "queries.jsonl")
        self._row = {q: i for i, q in enumerate(self.query_ids)}
        self.chunk_texts = [
            self.documents[d].text[s:e]
            for d, s, e in zip(self.chunk_doc.tolist(), self.chunk_start.tolist(), self.chunk_end.tolist(), strict=True)
        ]
        # chunk -> document as a sparse matrix for aggregations
        n = len(self.chunk_doc)
        self.chunk_to_doc = sp.csr_matrix(
            (np.ones(n), (np.arange(n), self.chunk_doc)), shape=(n, len(self.documents))
        )

    def split(self, name: str) -> Split:
        qrels = load_qrels(DATA / self.dataset / "qrels" / f"{name}.tsv")
        ids = list(qrels)
        return Split(name, ids, [self.queries[q] for q in ids], qrels, np.array([self._row[q] for q in ids]))

    # ---- score matrices -------------------------------------------------------------
    def dense(self, split: Split, query_vectors: np.ndarray | None = None) -> np.ndarray:
        q = self.query_vectors[split.rows] if query_vectors is None else query_vectors
        return q @ self.vectors.T

    def chunk_lexicon(
        self,
        analyzer: Callable[[str], list[str]] = analyze,
        k1: float = 1.2,
        b: float = 0.75,
        title: int = 1,
        unit: str = "chunk",
    ) -> Lexicon:
        """BM25 over chunks (title + chunk text, the title repeated `title` times) or whole documents."""
        if unit == "doc":
            texts = [analyzer(d.title) * title + analyzer(d.text) for d in self.documents]
        else:
            titles = {}
            texts = []
            for d, text in zip(self.chunk_doc.tolist(), self.chunk_texts, strict=True):
                if d not in titles:
                    titles[d] = analyzer(self.documents[d].title)
                texts.append(titles[d] * title + analyzer(text))
        return Lexicon.build(texts, k1, b)

    # ---- evaluation -----------------------------------------------------------------
    def evaluate(self, split: Split, doc_scores: np.ndarray | list, k: int = 10) -> dict[str, float]:
        """Mean nDCG@10 / recall@100 given per-query doc rankings (doc score matrix or ranked id lists)."""
        nd, r100 = [], []
        for i, q in enumerate(split.query_ids):
            ranked = doc_scores[i] if isinstance(doc_scores, list) else self.top_docs(doc_scores[i], 100)
            nd.append(ndcg_at_k(ranked, split.qrels[q], k))
            r100.append(recall_at_k(ranked, split.qrels[q], 100))
        return {"ndcg@10": float(np.mean(nd)), "recall@100": float(np.mean(r100)), "per_query": nd}

    def top_docs(self, scores: np.ndarray, k: int) -> list[str]:
        k = min(k, scores.size)
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((part, -scores[part]))]
        return [self.doc_ids[i] for i in order if np.isfinite(scores[i])]

    def max_per_doc(self, chunk_scores: np.ndarray, fill: float = -np.inf) -> np.ndarray:
        """queries x docs: each document's best chunk score."""
        return np.maximum.reduceat(chunk_scores, self.doc_first, axis=1)

    @property
    def doc_first(self) -> np.ndarray:
        """First chunk of each document (chunks are stored in document order, every document has one)."""
        first = np.searchsorted(self.chunk_doc, np.arange(len(self.documents)))
        assert np.all(np.diff(self.chunk_doc) >= 0) and np.all(self.chunk_doc[first] == np.arange(len(first)))
        return first
