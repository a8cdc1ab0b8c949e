"""The index a running service searches, replaceable while requests are in flight."""

from __future__ import annotations

import threading
from collections.abc import Callable

from indexer.errors import IndexNotFound
from indexer.search import SearchIndex

SwapListener = Callable[[SearchIndex | None], None]


class IndexHolder:
    """Holds the loaded `SearchIndex`; `swap` replaces it atomically.

    A request calls `get()` once and uses that index to the end, so a swap in the
    middle of a request never mixes two indexes. The old index returned by `swap`
    stays usable by requests that already hold it; nothing here closes it.
    """

    def __init__(self) -> None:
        self._index: SearchIndex | None = None
        self._problem = "The index is still loading; try again in a moment."
        self._lock = threading.Lock()
        self._listeners: list[SwapListener] = []

    def on_swap(self, listener: SwapListener) -> None:
        """Call `listener(new_index)` after every swap (metrics use it for the size gauges)."""
        self._listeners.append(listener)

    def get(self) -> SearchIndex:
        """The current index, or IndexNotFound saying why there is none."""
        index = self._index
        if index is None:
            raise IndexNotFound(self._problem)
        return index

    @property
    def loaded(self) -> bool:
        return self._index is not None

    @property
    def problem(self) -> str | None:
        """Why no index is loaded (None when one is)."""
        return None if self._index is not None else self._problem

    def swap(self, new_index: SearchIndex | None, problem: str | None = None) -> SearchIndex | None:
        """Serve `new_index` from now on (None: serve nothing, because of `problem`); returns the old one."""
        with self._lock:
            old, self._index = self._index, new_index
            if new_index is None:
                self._problem = problem or "No index is loaded."
            for listener in self._listeners:
                listener(new_index)
        return old
