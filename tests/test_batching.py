"""Micro-batching of query embeddings (api/batching.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from api.batching import QueryBatcher
from indexer.embedding import FakeEmbedder


class GatedEmbedder(FakeEmbedder):
    """A FakeEmbedder whose first call blocks until released, recording every call's size."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.sizes: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.sizes.append(len(texts))
        if len(self.sizes) == 1:
            assert self.release.wait(10)
        return super().embed(texts)


def test_each_caller_gets_its_own_vector():
    batcher = QueryBatcher(FakeEmbedder())
    reference = FakeEmbedder()
    queries = [f"question number {i}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(lambda q: batcher.embed([q]), queries))
    for query, vector in zip(queries, vectors, strict=True):
        assert vector.shape == (1, reference.dimension)
        np.testing.assert_allclose(vector[0], reference.embed([query])[0])
    assert batcher.queries == 40


def _queue_behind_a_busy_model(batcher: QueryBatcher, inner: GatedEmbedder, waiting: int) -> None:
    """One query enters the model and blocks there; `waiting` more queue up; then all are answered."""
    with ThreadPoolExecutor(waiting + 1) as pool:
        first = pool.submit(batcher.embed, ["the first query"])
        while not inner.sizes:  # the worker is inside the first model call
            threading.Event().wait(0.001)
        queued = [pool.submit(batcher.embed, [f"query {i}"]) for i in range(waiting)]
        while batcher._queue.qsize() < waiting:
            threading.Event().wait(0.001)
        inner.release.set()
        for future in [first, *queued]:
            future.result(timeout=10)


def test_queries_arriving_while_the_model_is_busy_share_one_batch():
    inner = GatedEmbedder()
    batcher = QueryBatcher(inner, workers=1)
    _queue_behind_a_busy_model(batcher, inner, 5)
    assert inner.sizes == [1, 5]
    assert batcher.batches == 2


def test_batches_are_capped():
    inner = GatedEmbedder()
    batcher = QueryBatcher(inner, max_batch=3, workers=1)
    _queue_behind_a_busy_model(batcher, inner, 7)
    assert inner.sizes == [1, 3, 3, 1]


def test_many_texts_bypass_the_queue_and_errors_reach_the_caller():
    inner = FakeEmbedder()
    batcher = QueryBatcher(inner)
    assert batcher.embed(["a", "b", "c"]).shape == (3, inner.dimension)
    assert batcher.batches == 0
    assert (batcher.model_id, batcher.dimension, batcher.backend) == (inner.model_id, inner.dimension, "fake")

    class Broken(FakeEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("model failed")

    broken = QueryBatcher(Broken())
    with pytest.raises(RuntimeError, match="model failed"):
        broken.embed(["query"])
    with pytest.raises(RuntimeError, match="model failed"):  # the worker survives a failure
        broken.embed(["another"])


def test_the_batcher_passes_token_vectors_through_so_late_interaction_stays_on(index_dir):
    from indexer.late_interaction import TokenEmbedder
    from indexer.search import SearchConfig, SearchIndex

    batcher = QueryBatcher(FakeEmbedder())
    assert isinstance(batcher, TokenEmbedder)
    [got], [want] = batcher.embed_tokens(["Xiaomi cars"]), FakeEmbedder().embed_tokens(["Xiaomi cars"])
    np.testing.assert_array_equal(got, want)
    late = SearchConfig(late_depth=10)
    served = SearchIndex.load(index_dir, batcher, late).search("Xiaomi electric car", k=5)
    direct = SearchIndex.load(index_dir, FakeEmbedder(), late).search("Xiaomi electric car", k=5)
    assert [(h.chunk_id, h.score) for h in served] == [(h.chunk_id, h.score) for h in direct]
