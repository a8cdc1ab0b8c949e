"""Load, check and swap the served index; notice newly published indexes (live reload).

The service polls `<index_dir>/CURRENT` (a few bytes) every `reload_interval` seconds.
When it names a build other than the one served, that build is loaded in a worker
thread, checked with a real search, and swapped in; requests already running keep
the index they started with (nothing is closed under them; the old index is freed
when the last of them lets go). A build that fails to load is refused: the old index
keeps serving, the error is logged, shown on /readyz and counted in /metrics, and that
build is not retried (every publish gets a new id).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread

from api.holder import IndexHolder
from api.metrics import Metrics
from api.settings import Settings
from indexer.embedding import Embedder
from indexer.errors import CorruptIndex, IncompatibleIndex, NewsdeskError
from indexer.manifest import MANIFEST_NAME
from indexer.publish import BUILDS_DIR, current_id
from indexer.search import SearchIndex

# Uvicorn configures this logger, so these messages show beside its own.
log = logging.getLogger("uvicorn.error")

SMOKE_QUERY = "news"


class IndexManager:
    """Owns the embedder and every index load: at startup, on live reload, after a write."""

    def __init__(self, settings: Settings, holder: IndexHolder, metrics: Metrics, embedder: Embedder | None) -> None:
        self.settings = settings
        self.root = Path(settings.index_dir)
        self.holder = holder
        self.metrics = metrics
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        # One load at a time: the poller and a write that just published must not both load the build.
        self._load_lock = asyncio.Lock()
        self._refused: str | None = None  # the build id that last failed to load
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.loaded_at: datetime | None = None

    @property
    def embedder(self) -> Embedder:
        """The query (and write) embedder: the packaged MiniLM (int8 ONNX when available) unless one was given."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = service_embedder(self.settings.embed_threads, self.settings.micro_batch)
            return self._embedder

    def load(self) -> SearchIndex:
        """Load and check the published index (blocking: call it in a worker thread)."""
        return load_checked(self.root, self.embedder, self.settings.late_interaction_depth)

    async def start(self, preloaded: SearchIndex | None = None) -> None:
        """Serve `preloaded` (already checked), or load the published index; on failure serve 503s that say why."""
        if preloaded is not None:
            self._serve(preloaded)
            return
        attempted = current_id(self.root)
        try:
            index = await anyio.to_thread.run_sync(self.load)
        except NewsdeskError as exc:
            # Stay up and say why on /readyz and every search, rather than crash-looping.
            log.error("newsdesk: no index served: %s", exc)
            self._refused = attempted
            self.holder.swap(None, str(exc))
            return
        self._serve(index)

    async def refresh(self) -> bool:
        """Load and serve the published index if it is not the one served; True if it was swapped in."""
        if not self._is_new(current_id(self.root)):
            return False
        async with self._load_lock:
            attempted = current_id(self.root)
            if not self._is_new(attempted):  # loaded by whoever held the lock before us
                return False
            try:
                index = await anyio.to_thread.run_sync(self.load)
            except Exception as exc:  # a reload must never take the service down
                self._refuse(attempted, exc)
                return False
            self._serve(index)
            return True

    async def watch(self) -> None:
        """Poll CURRENT every reload_interval seconds until cancelled."""
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                await self.refresh()
            except Exception:  # e.g. the index directory became unreadable: log, keep polling
                log.exception("newsdesk: checking %s for a new index failed", self.root)

    def _is_new(self, build_id: str | None) -> bool:
        served = self.holder.get().index_id if self.holder.loaded else None
        return build_id is not None and build_id != served and build_id != self._refused

    def _serve(self, index: SearchIndex) -> None:
        old = self.holder.swap(index)
        self.loaded_at = datetime.now(UTC)
        self._refused = None
        self.last_error = self.last_error_at = None
        self.metrics.index_reload_error.set(0)
        if old is not None:
            self.metrics.index_reloads.labels("success").inc()
        log.info(
            "newsdesk: serving index %s (%d articles, %d chunks)%s",
            index.index_id, index.store.article_count, index.store.chunk_count,
            f", replacing {old.index_id}" if old is not None else "",
        )

    def _refuse(self, build_id: str | None, exc: Exception) -> None:
        message = str(exc) if isinstance(exc, NewsdeskError) else f"{type(exc).__name__}: {exc}"
        self._refused = build_id
        self.last_error = f"index {build_id} was not loaded: {message}"
        self.last_error_at = datetime.now(UTC)
        self.metrics.index_reloads.labels("failure").inc()
        self.metrics.index_reload_error.set(1)
        if self.holder.loaded:
            log.error("newsdesk: keeping index %s; the newly published %s",
                      self.holder.get().index_id, self.last_error, exc_info=not isinstance(exc, NewsdeskError))
        else:
            log.error("newsdesk: no index served: %s", message, exc_info=not isinstance(exc, NewsdeskError))
            self.holder.swap(None, message)


def load_checked(root: Path, embedder: Embedder, late_depth: int | None = None) -> SearchIndex:
    """Load the index published under `root` and run one search on it; NewsdeskError naming the file if bad.

    `late_depth` is the server's late-interaction setting (None: the index's default)."""
    try:
        index = SearchIndex.load(root, embedder, late_depth=late_depth)
    except NewsdeskError as exc:
        raise _naming_the_file(exc, root) from None
    # A real search touches every part (model, vectors, BM25, chunk store) before any
    # user request does, and pays the model's slow first call here rather than on theirs.
    try:
        index.search(SMOKE_QUERY, k=1)
    except NewsdeskError:
        raise
    except Exception as exc:
        raise CorruptIndex(
            f"{index.path}: a test search failed ({type(exc).__name__}: {exc}); "
            "rebuild the index with `newsdesk index`."
        ) from exc
    return index


def _naming_the_file(exc: NewsdeskError, root: Path) -> NewsdeskError:
    """The same error, led by the file at fault when its message does not name one.

    A manifest from another model says which models differ but not where it lives;
    the fix (rebuild) is in the message already.
    """
    message = str(exc)
    build_id = current_id(root)
    if not isinstance(exc, IncompatibleIndex) or build_id is None or str(root / BUILDS_DIR / build_id) in message:
        return exc
    return type(exc)(f"{root / BUILDS_DIR / build_id / MANIFEST_NAME}: {message}")


def service_embedder(threads: int, micro_batch: bool = False) -> Embedder:
    """The embedder a server uses: $NEWSDESK_EMBEDDER or int8 ONNX when installed, `threads` CPU threads each.

    One thread per query embedding, and per FAISS search: requests already run in parallel in
    the thread pool, and on a small machine OpenMP threads of concurrent searches wait for each
    other (measured on 2 cores: a flat search over 13.7k vectors took 16-24 ms with 2 threads,
    1-2 ms with 1). With `micro_batch`, queries that arrive together share one model call.
    """
    import faiss
    import torch

    from api.batching import QueryBatcher
    from indexer.embedding import default_embedder

    torch.set_num_threads(threads)  # process-wide; this process only serves
    faiss.omp_set_num_threads(threads)
    embedder = default_embedder()
    if hasattr(embedder, "threads"):
        embedder.threads = threads
    return QueryBatcher(embedder) if micro_batch else embedder
