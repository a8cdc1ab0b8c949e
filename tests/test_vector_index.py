"""Exact, HNSW and sharded IVF dense indexes against a brute-force NumPy reference."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import build, ivf, vector_index
from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from indexer.errors import CorruptIndex
from indexer.manifest import IVF_DATA_NAME, VECTORS_NAME
from indexer.publish import current_build
from indexer.search import Filters, SearchIndex
from indexer.vector_index import (
    FLAT,
    HNSW,
    build_vector_index,
    choose_factory,
    read_vector_index,
    search_vectors,
    write_vector_index,
)
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
    assert choose_factory(vector_index.IVF_MIN_CHUNKS - 1) == HNSW
    assert choose_factory(vector_index.IVF_MIN_CHUNKS) == "IVF4096,SQ8"
    assert choose_factory(154_000_000) == "IVF65536,SQ8"
    assert [ivf.ivf_lists(n) for n in (1, 100, 3_000, 100_000)] == [1, 1, 32, 1024]
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
    _assert_same_results(flat, hnsw)


def test_build_picks_hnsw_past_the_threshold(tmp_path: Path, fake_embedder: FakeEmbedder,
                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(vector_index, "EXACT_MAX_CHUNKS", 3)
    build_index(load_corpus(SEED_CORPUS)[0], tmp_path, fake_embedder, progress=False)
    index = SearchIndex.load(tmp_path, fake_embedder)
    assert index.store.chunk_count > 3 and index.manifest.faiss_factory == HNSW
    assert isinstance(index.vectors, faiss.IndexHNSW)


# Sharded IVF (indexer/ivf.py): the large-build path, exercised on small data.

SQ8, PQ = "IVF16,SQ8", "IVF16,PQ8x4np"  # 4-bit PQ trains fast


@pytest.fixture
def one_faiss_thread() -> Iterator[None]:
    """PQ training runs many small OpenMP regions; on a busy machine two threads spin for seconds in each."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _write(vectors: np.ndarray, factory: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setattr(ivf, "SHARD_CHUNKS", 700)  # 3,000 vectors -> 5 shards
    directory.mkdir(parents=True)
    return write_vector_index(vectors, factory, directory)


@pytest.mark.parametrize("factory", [SQ8, PQ])
@pytest.mark.usefixtures("one_faiss_thread")
def test_sharded_ivf_merged_on_disk_equals_a_monolithic_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             factory: str):
    vectors, queries = _unit_vectors(3000), _unit_vectors(30, seed=8)
    figures = _write(vectors, factory, tmp_path / "build", monkeypatch)
    assert figures["shards"] == 5 and figures["nlist"] == 16
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == [VECTORS_NAME, IVF_DATA_NAME]
    sharded = read_vector_index(tmp_path / "build" / VECTORS_NAME)
    whole = ivf.train_ivf(vectors, factory)  # same sample, same k-means seed: the same trained index
    whole.add(vectors)
    for query in queries:
        (p1, s1), (p2, s2) = search_vectors(sharded, query, 10), search_vectors(whole, query, 10)
        assert p1.tolist() == p2.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-6)
    # reconstruct (hybrid search scores candidates with it) decodes what the search scores
    np.testing.assert_allclose(sharded.reconstruct(int(p1[0])) @ queries[-1], s1[0], rtol=1e-5)


def test_ivf_build_directory_can_be_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    vectors = _unit_vectors(3000)
    _write(vectors, SQ8, tmp_path / "a" / "build", monkeypatch)
    before = search_vectors(read_vector_index(tmp_path / "a" / "build" / VECTORS_NAME), vectors[0], 10)
    assert str(tmp_path).encode() not in (tmp_path / "a" / "build" / VECTORS_NAME).read_bytes()
    (tmp_path / "a" / "build").rename(tmp_path / "moved")
    shutil.rmtree(tmp_path / "a")
    moved = read_vector_index(tmp_path / "moved" / VECTORS_NAME)
    assert before[0].tolist() == search_vectors(moved, vectors[0], 10)[0].tolist()
    assert faiss.downcast_InvertedLists(moved.invlists).prefetch_nthread == 0  # see ivf.map_lists


def test_filtered_ivf_search_widens_its_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    vectors, queries = _unit_vectors(3000), _unit_vectors(20, seed=9)
    monkeypatch.setattr(ivf, "IVF_NPROBE", 2)  # of 64 lists: unfiltered, a narrow filter would find little
    _write(vectors, "IVF64,SQ8", tmp_path / "build", monkeypatch)
    index = read_vector_index(tmp_path / "build" / VECTORS_NAME)
    decoded = index.reconstruct_n(0, index.ntotal)  # what the index scores: SQ8 codes, not the floats
    narrow, broad = np.arange(0, 3000, 97), np.arange(0, 3000, 2)
    for query in queries:
        positions, _ = search_vectors(index, query, 10, narrow)  # every list probed: exact over the codes
        assert positions.tolist() == _brute(decoded, query, 10, narrow).tolist()
        positions, _ = search_vectors(index, query, 10, broad)
        assert len(positions) == 10 and set(positions.tolist()) <= set(broad.tolist())
    assert search_vectors(index, queries[0], 10, np.zeros(0, dtype=np.int64))[0].size == 0


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_ivf_lists_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str):
    _write(_unit_vectors(3000), SQ8, tmp_path / "build", monkeypatch)
    lists = tmp_path / "build" / IVF_DATA_NAME
    lists.unlink() if damage == "missing" else lists.write_bytes(lists.read_bytes()[:1000])
    with pytest.raises(CorruptIndex, match=IVF_DATA_NAME):
        read_vector_index(tmp_path / "build" / VECTORS_NAME)


def test_a_large_build_is_sharded_ivf_end_to_end(tmp_path: Path, fake_embedder: FakeEmbedder,
                                                 monkeypatch: pytest.MonkeyPatch):
    articles = load_corpus(SEED_CORPUS)[0]
    build_index(articles, tmp_path / "flat", fake_embedder, progress=False)
    # The large-build path on corpus/'s 12 chunks: 2 training vectors a list (4 lists), shards
    # of 5; IVF-Flat probing every list is exact, so it must rank like the flat index.
    for name, value in {"IVF_MIN_CHUNKS": 3, "IVF_CODE": "Flat"}.items():
        monkeypatch.setattr(vector_index, name, value)
    monkeypatch.setattr(ivf, "TRAIN_PER_LIST", 2)
    monkeypatch.setattr(ivf, "SHARD_CHUNKS", 5)
    monkeypatch.setattr(build, "CACHE_BLOCK", 7)  # cached vectors read back in several blocks
    root = tmp_path / "ivf"
    for _ in range(2):  # the second build reuses every vector from the cache
        result = build_index(articles, root, fake_embedder, progress=False)
    assert result.embedded == 0
    shutil.move(root, tmp_path / "elsewhere")  # e.g. copied to a serving host
    flat, large = (SearchIndex.load(tmp_path / name, fake_embedder) for name in ("flat", "elsewhere"))
    figures = large.manifest.vector_index
    assert large.manifest.faiss_factory == figures["factory"] == f"IVF{figures['nlist']},Flat"
    assert isinstance(large.vectors, faiss.IndexIVFFlat)
    assert (figures["nlist"], figures["nprobe"], figures["shards"]) == (4, 4, 3)
    assert figures["bytes_per_chunk"] > 4 * fake_embedder.dimension + 8  # floats and id, plus the quantizer
    assert figures["build_vector_bytes"] == 12 * fake_embedder.dimension * 4  # the sample: every chunk
    assert sorted(p.name for p in large.path.iterdir()) == sorted(p.name for p in flat.path.iterdir()) + [
        IVF_DATA_NAME]
    assert flat.manifest.vector_index["build_vector_bytes"] == flat.store.chunk_count * fake_embedder.dimension * 4
    _assert_same_results(flat, large)


def _assert_same_results(flat: SearchIndex, other: SearchIndex) -> None:
    """Dense and hybrid top 5, with and without a filter, equal to the exact index's."""
    filters = Filters(date_from=date(2019, 1, 1))
    for mode in ("dense", "hybrid"):
        for query, where in (("Xiaomi license", None), ("cars", filters)):
            a = [(h.chunk_id, round(h.score, 5)) for h in flat.search(query, k=5, mode=mode, filters=where)]
            b = [(h.chunk_id, round(h.score, 5)) for h in other.search(query, k=5, mode=mode, filters=where)]
            assert a == b and a, (mode, query)
