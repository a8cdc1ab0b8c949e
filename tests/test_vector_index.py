"""Exact and HNSW dense indexes against a brute-force NumPy reference."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import vector_index
from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from indexer.manifest import VECTORS_NAME
from indexer.publish import current_build
from indexer.search import Filters, SearchIndex
from indexer.vector_index import FLAT, HNSW, build_vector_index, choose_factory, search_vectors
from tests.conftest import SEED_CORPUS


def _unit_vectors(n: int, d: int = 48, seed: int = 7) -> np.ndarray:
    # Clustered, like real embeddings, rather than uniform noise on the sphere.
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d))
    points = centres[rng.integers(0, 20, n)] + 0.6 * rng.standard_normal((n, d))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def _brute(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = vectors @ query
    if allowed is not None:
        masked = np.full_like(scores, -np.inf)
        masked[allowed] = scores[allowed]
        scores = masked
    return np.argsort(-scores, kind="stable")[:k]


def test_factory_is_chosen_by_size():
    assert choose_factory(0) == FLAT
    assert choose_factory(vector_index.EXACT_MAX_CHUNKS) == FLAT
    assert choose_factory(vector_index.EXACT_MAX_CHUNKS + 1) == HNSW
    with pytest.raises(ValueError, match="Unsupported"):
        build_vector_index(_unit_vectors(10), "IVF4096,PQ8")


def test_flat_is_exact_and_hnsw_recalls_nearly_all():
    vectors, queries = _unit_vectors(3000), _unit_vectors(50, seed=8)
    flat, hnsw = build_vector_index(vectors, FLAT), build_vector_index(vectors, HNSW)
    found = 0
    for query in queries:
        truth = _brute(vectors, query, 10)
        positions, scores = search_vectors(flat, query, 10)
        np.testing.assert_allclose(scores, (vectors @ query)[truth], rtol=1e-5)
        found += len(set(search_vectors(hnsw, query, 10)[0].tolist()) & set(truth.tolist()))
    assert found / (10 * len(queries)) >= 0.95


def test_filtered_search_is_exact_for_both_kinds():
    vectors, queries = _unit_vectors(3000), _unit_vectors(20, seed=9)
    allowed = np.arange(0, 3000, 97)  # a narrow filter: 31 vectors
    for factory in (FLAT, HNSW):
        index = build_vector_index(vectors, factory)
        for query in queries:
            positions, _ = search_vectors(index, query, 10, allowed)
            assert positions.tolist() == _brute(vectors, query, 10, allowed).tolist()
        assert search_vectors(index, queries[0], 10, np.zeros(0, dtype=np.int64))[0].size == 0


def test_hnsw_returns_as_many_results_as_asked_beyond_ef_search():
    vectors = _unit_vectors(2000)
    index = build_vector_index(vectors, HNSW)
    positions, _ = search_vectors(index, vectors[0], vector_index.HNSW_EF_SEARCH + 50)
    assert len(set(positions.tolist())) == vector_index.HNSW_EF_SEARCH + 50


def test_hnsw_settings_survive_write_and_read(tmp_path: Path):
    index = build_vector_index(_unit_vectors(500), HNSW)
    faiss.write_index(index, str(tmp_path / "v.faiss"))
    loaded = faiss.read_index(str(tmp_path / "v.faiss"))
    assert isinstance(loaded, faiss.IndexHNSW) and loaded.hnsw.efSearch == vector_index.HNSW_EF_SEARCH
    np.testing.assert_array_equal(loaded.reconstruct(3), index.reconstruct(3))


def test_an_hnsw_index_searches_like_the_exact_one(tmp_path: Path, fake_embedder: FakeEmbedder):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path / "flat", fake_embedder, progress=False)
    build_index(articles, tmp_path / "hnsw", fake_embedder, progress=False, faiss_factory=HNSW)
    flat, hnsw = SearchIndex.load(tmp_path / "flat", fake_embedder), SearchIndex.load(tmp_path / "hnsw", fake_embedder)
    assert flat.manifest.faiss_factory == FLAT and hnsw.manifest.faiss_factory == HNSW
    assert isinstance(faiss.read_index(str(current_build(tmp_path / "hnsw") / VECTORS_NAME)), faiss.IndexHNSW)
    filters = Filters(date_from=date(2019, 1, 1))
    for mode in ("dense", "hybrid"):
        for query, where in (("Xiaomi license", None), ("cars", filters)):
            a = [(h.chunk_id, round(h.score, 5)) for h in flat.search(query, k=5, mode=mode, filters=where)]
            b = [(h.chunk_id, round(h.score, 5)) for h in hnsw.search(query, k=5, mode=mode, filters=where)]
            assert a == b and a, (mode, query)


def test_build_picks_hnsw_past_the_threshold(tmp_path: Path, fake_embedder: FakeEmbedder,
                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(vector_index, "EXACT_MAX_CHUNKS", 3)
    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, fake_embedder, progress=False)
    index = SearchIndex.load(tmp_path, fake_embedder)
    assert index.store.chunk_count > 3 and index.manifest.faiss_factory == HNSW
    assert isinstance(index.vectors, faiss.IndexHNSW)
