"""Late-interaction re-scoring of the hybrid's top passages with the embedding model's token vectors.

MiniLM mean-pools its token vectors into one passage vector, which averages everything a
passage says. Its token vectors also say which words of the passage answer which words of
the query: MaxSim (ColBERT's score) lets each query token find its closest passage token,

    maxsim(q, p) = mean over query tokens t of max over passage tokens u of cos(t, u),

a soft term match (a query word can meet a related passage word) that neither BM25's exact
stems nor the single averaged cosine gives. The hybrid's top passages are encoded again
at query time (their token vectors are not stored: that would be ~100x the index), and each
gains `weight * maxsim`. Measured in eval/README.md ("Retrieval quality: ablations").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that can also return each text's token vectors (L2-normalised, special tokens left out)."""

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def maxsim(query: np.ndarray, passages: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query's token vectors [q, d] against each passage's [p_i, d]; 0 for an empty side."""
    if len(query) == 0 or not passages:
        return np.zeros(len(passages), dtype=np.float64)
    lengths = [len(p) for p in passages]
    scores = np.zeros(len(passages), dtype=np.float64)
    filled = [i for i, n in enumerate(lengths) if n]
    if filled:
        stacked = np.vstack([passages[i] for i in filled]).astype(np.float32, copy=False)
        sims = stacked @ query.astype(np.float32, copy=False).T  # [all passage tokens, query tokens]
        bounds = np.cumsum([0] + [lengths[i] for i in filled])[:-1]
        scores[filled] = np.maximum.reduceat(sims, bounds, axis=0).mean(axis=1)
    return scores


def normalise_rows(tokens: np.ndarray) -> np.ndarray:
    """Token vectors scaled to unit length (a zero vector stays zero)."""
    norms = np.linalg.norm(tokens, axis=1, keepdims=True)
    return (tokens / np.maximum(norms, 1e-9)).astype(np.float32)
