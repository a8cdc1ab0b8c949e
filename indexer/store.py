"""The chunk store: articles and chunk offsets in SQLite, one row per vector."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.chunking import Chunk
from indexer.corpus import Article

SCHEMA = """
CREATE TABLE articles (
    pos INTEGER PRIMARY KEY,
    article_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    source TEXT,
    date TEXT,
    url TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE TABLE chunks (
    pos INTEGER PRIMARY KEY,
    article_pos INTEGER NOT NULL REFERENCES articles(pos),
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL
);
"""


def write_store(path: Path, articles: Sequence[Article], chunks: Iterable[Chunk]) -> None:
    """Write articles and chunks; chunk row i is vector i."""
    positions = {a.article_id: i for i, a in enumerate(articles)}
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (i, a.article_id, a.title, a.source, a.date, a.url, a.text, a.content_hash)
                for i, a in enumerate(articles)
            ),
        )
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
            ((i, positions[c.article_id], c.ordinal, c.start, c.end, c.text) for i, c in enumerate(chunks)),
        )
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=DELETE")


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with the metadata of its article (what a citation needs)."""

    pos: int
    ordinal: int
    start: int
    end: int
    text: str
    article_id: str
    title: str
    source: str | None
    date: str | None
    url: str | None

    @property
    def chunk_id(self) -> str:
        return f"{self.article_id}#{self.ordinal}"


class ChunkStore:
    """Read side of the store: per-chunk arrays in memory, texts fetched on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        db = self._db()
        # quick_check reads every page, so a truncated or overwritten file fails here, at load,
        # rather than as wrong rows or errors in the middle of serving.
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity check failed: {problems[0].splitlines()[-1][:200]}")
        rows = db.execute("SELECT pos, article_id, title, source, date, url FROM articles ORDER BY pos").fetchall()
        self.article_ids = [r[1] for r in rows]
        self.article_meta = {r[1]: (r[0], r[2], r[3], r[4], r[5]) for r in rows}
        self.article_sources = [r[3] for r in rows]
        self.article_dates = [r[4] for r in rows]
        chunk_rows = db.execute("SELECT article_pos, ordinal, start, end FROM chunks ORDER BY pos").fetchall()
        table = np.array(chunk_rows, dtype=np.int64).reshape(-1, 4)
        self.chunk_article = table[:, 0]
        self.chunk_ordinal = table[:, 1]
        self.chunk_start = table[:, 2]
        self.chunk_end = table[:, 3]

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_article)

    @property
    def article_count(self) -> int:
        return len(self.article_ids)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._local.db = db
        return db

    def article(self, article_id: str) -> Article | None:
        row = self._db().execute(
            "SELECT article_id, title, text, source, date, url FROM articles WHERE article_id = ?", (article_id,)
        ).fetchone()
        return Article(*row) if row else None

    def articles(self) -> Iterator[Article]:
        """Every stored article, in index order (what a rebuild starts from)."""
        rows = self._db().execute("SELECT article_id, title, text, source, date, url FROM articles ORDER BY pos")
        yield from (Article(*row) for row in rows)

    def chunks(self, positions: Sequence[int]) -> list[ChunkRow]:
        """Chunk rows with their articles, in the order of `positions`."""
        if not positions:
            return []
        marks = ",".join("?" * len(positions))
        rows = self._db().execute(
            f"SELECT c.pos, c.ordinal, c.start, c.end, c.text, a.article_id, a.title, a.source, a.date, a.url "
            f"FROM chunks c JOIN articles a ON a.pos = c.article_pos WHERE c.pos IN ({marks})",
            [int(p) for p in positions],
        ).fetchall()
        by_pos = {r[0]: ChunkRow(*r) for r in rows}
        return [by_pos[int(p)] for p in positions]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
