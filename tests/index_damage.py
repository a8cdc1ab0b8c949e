"""Ways to break a published index on disk, for the corrupt-index and live-reload tests.

Each entry damages a build directory and names the file the error message must point at.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from indexer.manifest import LEXICAL_DIR, MANIFEST_NAME, STORE_NAME, VECTORS_NAME


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_manifest(build: Path, **changes: object) -> None:
    path = build / MANIFEST_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _drop_last_chunk(build: Path) -> None:
    with sqlite3.connect(build / STORE_NAME) as db:
        db.execute("DELETE FROM chunks WHERE pos = (SELECT max(pos) FROM chunks)")


# name -> (damage, the file or directory the message must name)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_faiss": (lambda b: _truncate(b / VECTORS_NAME, 0.5), VECTORS_NAME),
    "missing_faiss": (lambda b: (b / VECTORS_NAME).unlink(), VECTORS_NAME),
    "missing_chunk_store": (lambda b: (b / STORE_NAME).unlink(), STORE_NAME),
    "truncated_chunk_store": (lambda b: _truncate(b / STORE_NAME, 0.9), STORE_NAME),
    "overwritten_chunk_store": (lambda b: (b / STORE_NAME).write_bytes(os.urandom(8192)), STORE_NAME),
    "manifest_from_another_model": (lambda b: _edit_manifest(b, model_id="other/model"), MANIFEST_NAME),
    "manifest_other_dimension": (lambda b: _edit_manifest(b, dimension=768), MANIFEST_NAME),
    "manifest_other_format_version": (lambda b: _edit_manifest(b, format_version=99), MANIFEST_NAME),
    "manifest_not_json": (lambda b: (b / MANIFEST_NAME).write_text("{half a manif"), MANIFEST_NAME),
    "vector_count_not_chunk_count": (_drop_last_chunk, "vectors"),
    "missing_lexical_index": (lambda b: shutil.rmtree(b / LEXICAL_DIR), LEXICAL_DIR),
}
