"""Apply a write (articles added, replaced or deleted) by building and publishing a new index.

The new index is the published one's stored articles with the change applied, built
with the same chunker and BM25 settings by `build_index` (so unchanged articles cost
only what build_index charges for them) and published atomically; the service then
swaps it in through the same path as a live reload.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.build import BuildResult, LexicalConfig, build_index
from indexer.chunking import ChunkerConfig
from indexer.corpus import Article
from indexer.embedding import Embedder
from indexer.errors import CorruptIndex, IncompatibleIndex, IndexNotFound, NewsdeskError
from indexer.manifest import STORE_NAME, Manifest
from indexer.publish import CURRENT_NAME, current_build
from indexer.store import ChunkStore

log = logging.getLogger("uvicorn.error")


class UnknownArticle(NewsdeskError):
    """A delete names an article the index does not hold."""

    def __init__(self, article_id: str) -> None:
        super().__init__(f"No article with id {article_id!r} in the index.")
        self.article_id = article_id


class EmptyIndex(NewsdeskError):
    """The change would leave no articles (an index needs at least one)."""


@dataclass(frozen=True)
class Change:
    """Articles to add or replace (by id), and ids to delete."""

    upserts: Sequence[Article] = ()
    deletes: Sequence[str] = ()


@dataclass(frozen=True)
class Applied:
    """What a write did, and the index it produced."""

    index_id: str
    added: list[str]
    replaced: list[str]
    deleted: list[str]
    articles: int
    chunks: int


def apply_change(root: Path, embedder: Embedder, change: Change) -> Applied:
    """Build and publish the published index plus `change` (blocking: run it in a worker thread).

    With no index published yet, the first write starts one.
    """
    base, manifest = _published_articles(root, embedder)
    by_id = {a.article_id: a for a in change.upserts}
    known = {a.article_id for a in base}
    for article_id in change.deletes:
        if article_id not in known:
            raise UnknownArticle(article_id)
    deleted = set(change.deletes)
    merged = [by_id.get(a.article_id, a) for a in base if a.article_id not in deleted]
    added = [a.article_id for a in change.upserts if a.article_id not in known]
    merged.extend(by_id[article_id] for article_id in added)
    if not merged:
        raise EmptyIndex("This would delete the last article, and an index needs at least one; add another first.")
    chunker = lexical = None
    if manifest is not None:
        try:
            chunker = ChunkerConfig(**manifest.chunker)  # type: ignore[arg-type]
            # The BM25 settings carry over; the analysis is always this code's (ANALYSIS_VERSION).
            settings = {k: v for k, v in manifest.lexical.items() if k != "analysis"}
            lexical = LexicalConfig(**settings)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise IncompatibleIndex(
                f"The published index's chunker or BM25 settings are not ones this newsdesk can repeat ({exc}); "
                "rebuild it with `newsdesk index`."
            ) from None
    # Token vectors stay stored if they were (and are stored, as by `newsdesk index`, for a first write).
    late = None if manifest is None else bool(manifest.late_interaction)
    result: BuildResult = build_index(
        merged, root, embedder, chunker, lexical, progress=False, say=log.info, late_interaction=late
    )
    return Applied(
        result.index_id, added, [a.article_id for a in change.upserts if a.article_id in known],
        list(change.deletes), result.articles, result.chunks,
    )


def _published_articles(root: Path, embedder: Embedder) -> tuple[list[Article], Manifest | None]:
    """The articles of the published index and its manifest ([] and None when there is none yet)."""
    try:
        build = current_build(root)
    except IndexNotFound:
        if (root / CURRENT_NAME).exists():
            raise  # CURRENT names a missing build: do not silently start over
        return [], None
    manifest = Manifest.read(build)
    manifest.check_compatible(embedder.model_id, embedder.dimension)
    path = build / STORE_NAME
    if not path.is_file():
        raise CorruptIndex(f"{path} is missing; rebuild the index with `newsdesk index`.")
    try:
        store = ChunkStore(path)
        try:
            return list(store.articles()), manifest
        finally:
            store.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptIndex(f"{path} is damaged ({exc}); rebuild the index with `newsdesk index`.") from None
