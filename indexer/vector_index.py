"""The dense index: exact (flat) while it is fast enough, HNSW beyond that, chosen by size.

Measured on this project's 2-core machine with all-MiniLM-L6-v2 vectors of the
realtimeqa_news chunks (eval/results/speed.md): see EXACT_MAX_CHUNKS for where the
exact scan stops being cheap. HNSW keeps the vectors (its `storage` is a flat index),
so `reconstruct` works for both, and a filtered search scans that storage exactly:
graph search with a selector can miss results when the filter is narrow.
"""

from __future__ import annotations

import faiss
import numpy as np

FLAT = "Flat"
HNSW = "HNSW32,Flat"
# Below this many chunks the index is exact. A flat scan costs about 1 ms per 10k
# vectors per query on 2 cores; past 200k chunks it outgrows the rest of a query.
EXACT_MAX_CHUNKS = 200_000
HNSW_EF_CONSTRUCTION = 80
# Candidates kept during graph search; at least the number of results asked for.
HNSW_EF_SEARCH = 128


def choose_factory(count: int) -> str:
    """The FAISS factory string for an index of `count` vectors."""
    return FLAT if count <= EXACT_MAX_CHUNKS else HNSW


def build_vector_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    """An inner-product index over `vectors` (L2-normalised, so scores are cosines)."""
    if factory not in (FLAT, HNSW):
        raise ValueError(f"Unsupported FAISS factory {factory!r}; use {FLAT!r} or {HNSW!r}.")
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if factory == HNSW:
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH  # written with the index, read back by read_index
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def search_vectors(
    index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of the `k` nearest vectors, only among positions `allowed` when given."""
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    params = None
    if allowed is not None:
        if allowed.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        if isinstance(index, faiss.IndexHNSW):
            index = faiss.downcast_index(index.storage)  # exact over the allowed subset
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, k))
    scores, positions = index.search(query, k, params=params)
    keep = positions[0] >= 0
    return positions[0][keep], scores[0][keep]
