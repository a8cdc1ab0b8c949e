"""Index root layout and atomic publishing.

    <root>/builds/<index_id>/   one complete build (manifest written last)
    <root>/CURRENT              the id of the published build, switched with os.replace
    <root>/.lock                held while building, so two builds never race

A crash at any point leaves CURRENT naming the previous complete build.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from indexer.errors import IndexBusy, IndexNotFound
from indexer.manifest import MANIFEST_NAME

CURRENT_NAME = "CURRENT"
DEFAULT_INDEX_DIR = Path(".newsdesk/index")  # under the current directory, for the CLI and the service
BUILDS_DIR = "builds"
KEEP_PREVIOUS = 1  # earlier complete builds kept so a serving process can finish with one


def new_index_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def current_id(root: Path) -> str | None:
    """The published build's id as CURRENT names it (None without one): one small read, for polling.

    A damaged CURRENT still gives a value (undecodable bytes replaced), so a watcher notices the
    change and reports why loading it fails rather than ignoring it.
    """
    try:
        return _read_pointer(root / CURRENT_NAME).strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a directory named CURRENT, no permission: loading it says why
        return f"<{CURRENT_NAME} unreadable: {exc.strerror}>"


def current_build(root: Path) -> Path:
    """The directory of the published build under `root`."""
    pointer = root / CURRENT_NAME
    try:
        index_id = _read_pointer(pointer).strip()
    except FileNotFoundError:
        raise IndexNotFound(
            f"No index at {root}. Build one with: newsdesk index corpus/ --index-dir {root}"
        ) from None
    except NotADirectoryError:
        raise IndexNotFound(f"{root} is not a directory (or lies under a file), so it holds no index.") from None
    except IsADirectoryError:
        raise IndexNotFound(f"{pointer} is a directory, not the file naming the published build.") from None
    except PermissionError:
        raise IndexNotFound(f"{pointer} cannot be read (permission denied).") from None
    # CURRENT holds one directory name; anything else (a path, damaged bytes) must not be followed.
    if not index_id or index_id in (".", "..") or "/" in index_id or "\\" in index_id or "\ufffd" in index_id:
        raise IndexNotFound(
            f"{pointer} is damaged: it does not name a build ({index_id[:80]!r}). "
            f"Rebuild with: newsdesk index corpus/ --index-dir {root}"
        )
    build = root / BUILDS_DIR / index_id
    if not build.is_dir():
        raise IndexNotFound(
            f"{pointer} names build {index_id!r}, which does not exist. Rebuild with: newsdesk index --index-dir {root}"
        )
    return build


def _read_pointer(pointer: Path) -> str:
    """CURRENT's text; bytes that are not UTF-8 come back as U+FFFD (a damaged file, refused by the caller)."""
    with open(pointer, "rb") as handle:
        return handle.read(4096).decode("utf-8", errors="replace")


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on the index root for the duration of a build."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(f"Another build is running on {root}; wait for it to finish.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_build_dir(root: Path) -> Path:
    build = root / BUILDS_DIR / new_index_id()
    build.mkdir(parents=True)
    return build


def publish(root: Path, build: Path) -> None:
    """Make `build` the current index: fsync its files, then switch CURRENT atomically."""
    for path in sorted(build.rglob("*")):
        if path.is_file():
            fsync_file(path)
    _fsync_dir(build)
    tmp = root / f".{CURRENT_NAME}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(build.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / CURRENT_NAME)
    _fsync_dir(root)


def clean_stale_builds(root: Path) -> list[Path]:
    """Remove unpublished leftovers (crashed builds) and old builds beyond KEEP_PREVIOUS."""
    builds_dir = root / BUILDS_DIR
    if not builds_dir.is_dir():
        return []
    try:
        current = current_build(root).name
    except IndexNotFound:
        current = None
    complete = sorted(
        (p for p in builds_dir.iterdir() if p.is_dir() and (p / MANIFEST_NAME).exists() and p.name != current),
        key=lambda p: p.name,
    )
    keep = {current, *(p.name for p in complete[-KEEP_PREVIOUS:])}
    removed = []
    for path in builds_dir.iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    for tmp in root.glob(f".{CURRENT_NAME}.*.tmp"):
        tmp.unlink(missing_ok=True)
    return removed


def fsync_file(path: Path) -> None:
    """Flush `path` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fsync_file(path)
