"""Vectors already computed, keyed by model + backend + sha256 of the exact embedding text.

Lives at <index-root>/cache/embeddings.sqlite, beside the builds, so it outlives them:
re-indexing an unchanged corpus embeds nothing, and an edited article re-embeds only
its chunks. SQLite in WAL mode commits each batch atomically, so a crash mid-build loses
at most the batch in flight and never leaves a half-written vector; the next build
reuses everything committed before the crash.

The backend is part of the key: int8 and fp32 vectors of one model differ slightly, and
an index should hold vectors from one backend only. An index that stores token vectors for
late interaction (their sign bits, indexer/late_interaction.py) caches them the same way.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from indexer.embedding import Embedder, backend_of

CACHE_DIR = "cache"
CACHE_NAME = "embeddings.sqlite"
_LOOKUP_BATCH = 500  # keys per SELECT, well under SQLite's bound-parameter limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    embedder TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (embedder, text_sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_signs (
    embedder TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    signs BLOB NOT NULL,
    PRIMARY KEY (embedder, text_sha256)
) WITHOUT ROWID;
"""


def text_key(text: str) -> bytes:
    """sha256 of the exact text the embedder sees."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def embedder_key(embedder: Embedder) -> str:
    """What makes two vectors of one text interchangeable: model, backend, dimension."""
    return f"{embedder.model_id}|{backend_of(embedder)}|{embedder.dimension}"


class EmbeddingCache:
    """A persistent map from (embedder, text hash) to a float32 vector (and, for late interaction, token sign bits)."""

    def __init__(self, path: Path, embedder: Embedder) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.embedder = embedder_key(embedder)
        self.dimension = embedder.dimension
        try:
            self._db = _open(path)
        except sqlite3.DatabaseError:
            # Damaged beyond SQLite's own recovery (overwritten, say): it is only a cache, so start afresh.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._db = _open(path)

    @classmethod
    def for_index(cls, root: Path, embedder: Embedder) -> EmbeddingCache:
        """The cache that belongs to the index root `root`."""
        return cls(root / CACHE_DIR / CACHE_NAME, embedder)

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `keys`."""
        found: dict[bytes, np.ndarray] = {}
        for key, blob in self._select("SELECT text_sha256, vector FROM vectors", keys):
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.size == self.dimension:
                found[key] = vector
        return found

    def get_many_signs(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached token sign bits ([tokens, dimension / 8] uint8) among `keys`."""
        width = (self.dimension + 7) // 8
        found: dict[bytes, np.ndarray] = {}
        for key, blob in self._select("SELECT text_sha256, signs FROM token_signs", keys):
            if len(blob) % width == 0:
                found[key] = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
        return found

    def _select(self, query: str, keys: Sequence[bytes]) -> Iterable[tuple[bytes, bytes]]:
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_BATCH):
            batch = unique[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(batch))
            where = f" WHERE embedder = ? AND text_sha256 IN ({marks})"
            yield from self._db.execute(query + where, [self.embedder, *batch])

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors in one transaction (all or nothing)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                ((self.embedder, key, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items),
            )

    def put_many_signs(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Store token sign bits in one transaction (all or nothing)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO token_signs VALUES (?, ?, ?)",
                ((self.embedder, key, np.ascontiguousarray(bits, dtype=np.uint8).tobytes()) for key, bits in items),
            )

    def keep_only(self, keys: Iterable[bytes]) -> int:
        """Drop every vector not in `keys` (of any embedder), so the cache stays the size of the index."""
        with self._db:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (embedder TEXT, text_sha256 BLOB)")
            self._db.execute("DELETE FROM keep")
            self._db.executemany("INSERT INTO keep VALUES (?, ?)", ((self.embedder, k) for k in set(keys)))
            removed = self._db.execute(
                "DELETE FROM vectors WHERE (embedder, text_sha256) NOT IN (SELECT embedder, text_sha256 FROM keep)"
            ).rowcount
            self._db.execute(
                "DELETE FROM token_signs WHERE (embedder, text_sha256) NOT IN (SELECT embedder, text_sha256 FROM keep)"
            )
            self._db.execute("DELETE FROM keep")
        return removed

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a crash may lose the last commit, never corrupt the file
        db.executescript(SCHEMA)
        db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone()  # reads a page: garbage fails here, not later
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
