"""Micro-batching of query embeddings: queries that arrive together share one model call.

Each search embeds one short query. Under concurrent load, many of those calls overlap;
`QueryBatcher` puts them on a queue that one thread drains, so the queries that arrived
while the previous batch ran are embedded together in the next one. Nothing waits for a
batch to fill: a lone query is embedded at once, and batches only form when the model
is already busy, which is when they help.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from indexer.embedding import Embedder
from indexer.late_interaction import TokenEmbedder

MAX_BATCH = 32


class QueryBatcher:
    """An `Embedder` that embeds single-text calls from many threads in shared batches.

    Calls with more than one text (index builds) go straight to the wrapped embedder.
    """

    def __init__(self, embedder: Embedder, max_batch: int = MAX_BATCH, workers: int = 2) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self.max_batch = max_batch
        # Token vectors (late interaction) go straight to the wrapped embedder: one call already
        # batches them. Set here, not left to __getattr__, which Python 3.12's Protocol checks ignore.
        if isinstance(embedder, TokenEmbedder):
            self.embed_tokens = embedder.embed_tokens
        self.batches = 0  # model calls made, for tests and metrics
        self.queries = 0
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]]] = queue.SimpleQueue()
        for number in range(workers):
            threading.Thread(target=self._drain, name=f"query-batcher-{number}", daemon=True).start()

    @property
    def backend(self) -> str:
        from indexer.embedding import backend_of

        return backend_of(self.embedder)

    def __getattr__(self, name: str) -> object:  # threads, warm_up, ...: the wrapped embedder's
        return getattr(self.embedder, name)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.embedder.embed(texts)
        future: Future[np.ndarray] = Future()
        self._queue.put((texts[0], future))
        return future.result()[None, :]

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                vectors = self.embedder.embed([text for text, _ in batch])
            except Exception as exc:  # handed to every caller, who raises it as usual
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.queries += len(batch)
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)
