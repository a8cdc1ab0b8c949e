"""The dense index: exact (flat) while it is fast enough, HNSW beyond that, sharded IVF for large builds.

Measured on this project's 2-core machine with all-MiniLM-L6-v2 vectors of the
realtimeqa_news chunks (eval/README.md "Speed", docs/scaling.md): see EXACT_MAX_CHUNKS and
IVF_MIN_CHUNKS for where each kind stops paying. HNSW keeps the vectors (its `storage` is
a flat index), and IVF keeps a direct map from position to code, so `reconstruct` works
for all three (approximately for IVF's SQ8/PQ codes, like its scores). A filtered search
scans the HNSW storage exactly, and widens IVF's probe as the filter narrows: either
search alone can miss results of a narrow filter.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from indexer.ivf import IVF_PATTERN, is_ivf, ivf_lists, map_lists, write_ivf
from indexer.manifest import IVF_DATA_NAME, VECTORS_NAME

FLAT = "Flat"
HNSW = "HNSW32,Flat"
# Below this many chunks the index is exact. A one-thread flat scan of the news vectors took
# 3.6 ms at 50k, 28.6 ms at 200k and 45 ms at 360k per query (HNSW: 0.25-0.4 ms, recall@10
# >= 0.98 at efSearch 128); past 200k chunks it outgrows the rest of a query.
EXACT_MAX_CHUNKS = 200_000
HNSW_EF_CONSTRUCTION = 80
# Candidates kept during graph search; at least the number of results asked for.
HNSW_EF_SEARCH = 128
# From this many chunks the build is IVF-SQ8 written shard by shard (indexer/ivf.py): HNSW
# is built in one process holding every vector and the graph (3.3 KB per chunk, 6.7 GB at
# 2M) and serves 1,808 B per chunk; IVF-SQ8 serves ~400 and recalls 0.986 of the exact
# top 10 on the news vectors (docs/scaling.md, "Large builds").
IVF_MIN_CHUNKS = 2_000_000
IVF_CODE = "SQ8"  # PQ48 is 4.7x smaller but recalls only 0.75 of the top 10 (docs/scaling.md)


def choose_factory(count: int) -> str:
    """The FAISS factory string for an index of `count` vectors."""
    if count >= IVF_MIN_CHUNKS:
        return f"IVF{ivf_lists(count)},{IVF_CODE}"
    return FLAT if count <= EXACT_MAX_CHUNKS else HNSW


def build_vector_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    """An in-memory inner-product index over `vectors` (L2-normalised, so scores are cosines); Flat or HNSW."""
    if factory not in (FLAT, HNSW):
        raise ValueError(f"Unsupported FAISS factory {factory!r}; use {FLAT!r}, {HNSW!r} or {IVF_PATTERN.pattern!r}.")
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if factory == HNSW:
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH  # written with the index, read back by read_index
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_vector_index(vectors: np.ndarray, factory: str, directory: Path) -> dict[str, object]:
    """Index `vectors` (row i is position i; an array or memmap) into `directory`; the manifest's figures.

    Flat and HNSW are built in memory from every vector; IVF reads the rows shard by shard.
    """
    if is_ivf(factory):
        figures: dict[str, object] = {"factory": factory, **write_ivf(vectors, factory, directory)}
        files = [directory / VECTORS_NAME, directory / IVF_DATA_NAME]
    else:
        faiss.write_index(build_vector_index(vectors, factory), str(directory / VECTORS_NAME))
        figures = {"factory": factory, "build_vector_bytes": vectors.size * 4}
        files = [directory / VECTORS_NAME]
    size = sum(path.stat().st_size for path in files)
    return figures | {"bytes_per_chunk": round(size / max(len(vectors), 1), 1)}


def read_vector_index(path: Path) -> faiss.Index:
    """Read the index with its codes memory-mapped, so replicas on one host share them in the page cache.

    IO_FLAG_MMAP_IFC maps the flat codes of Flat and HNSW (storage and graph) indexes
    (measured with faiss 1.15: a replica's private memory for a 300 MB flat index drops
    from 295 MB to 2 MB; docs/scaling.md); IVF lists live in their own file, mapped by
    `map_lists` wherever the build directory now is. Index types that cannot be mapped are read.
    """
    flags = faiss.IO_FLAG_SKIP_IVF_DATA | faiss.IO_FLAG_READ_ONLY
    try:
        index = faiss.read_index(str(path), flags | getattr(faiss, "IO_FLAG_MMAP_IFC", 0))  # faiss >= 1.10
    except RuntimeError:
        # Not mappable: read it into memory (a damaged file fails again here, with its message).
        index = faiss.read_index(str(path), flags)
    map_lists(index, path)
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
        selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
        params = faiss.SearchParameters(sel=selector)
        if isinstance(index, faiss.IndexHNSW):
            index = faiss.downcast_index(index.storage)  # exact over the allowed subset
        elif isinstance(index, faiss.IndexIVF):
            # Probe enough lists to meet as many allowed vectors as an unfiltered search meets
            # vectors: every list for a narrow filter.
            nprobe = min(index.nlist, math.ceil(index.nprobe * index.ntotal / allowed.size))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(index.hnsw.efSearch, k))
    scores, positions = index.search(query, k, params=params)
    keep = positions[0] >= 0
    return positions[0][keep], scores[0][keep]
