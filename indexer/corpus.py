"""Load a folder of news articles (.txt, .md, .html, .jsonl[.gz]) into `Article` records.

Nothing in a corpus may crash or hang a run: unreadable, binary, empty, oversized or
non-regular files, and files whose names are not UTF-8, are skipped with a warning that
names them, and the caller gets counts. A bad optional field (a date that is not a date,
a url that is not http(s)) is dropped with a warning naming the file (and line), and the
article is kept.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from indexer.errors import CorpusError
from indexer.formats import Article, article_from_record, parse_text_file

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
NOT_TEXT_RATIO = 0.3  # above this share of undecodable or control characters, a file is not text
NOT_UTF8_NAME = "its name is not valid UTF-8, so it cannot be an article id or be stored; rename it"
_NOT_TEXT_RE = re.compile(r"[\x00-\x08\x0e-\x1f\ufffd]")  # control characters other than tabs and breaks, U+FFFD


@dataclass
class LoadReport:
    """What happened to each input: counts plus the names and reasons of what was left out."""

    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.loaded} loaded, {len(self.skipped)} skipped, "
            f"{len(self.duplicates)} duplicates"
        )


Warn = Callable[[str], None]
# (where, what): where is a file, or file:line for a .jsonl record; what is the reason or the problem.
Notice = Callable[[str, str], None]


def load_corpus(
    path: Path | str,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    warn: Warn | None = None,
) -> tuple[list[Article], LoadReport]:
    """Read every supported file under `path` (a directory or one file), deduplicated."""
    root = Path(path)
    if not root.exists():
        raise CorpusError(f"Corpus path {root} does not exist.")
    warn = warn or log.warning
    report = LoadReport()
    articles: list[Article] = []
    by_hash: dict[str, str] = {}
    origins: dict[str, str] = {}  # article id -> the file (file:line) it was read from

    def skip(name: str, reason: str) -> None:
        name, reason = _printable(name), _printable(reason)
        report.skipped.append((name, reason))
        warn(f"skipped {name}: {reason}")

    def note(where: str, problem: str) -> None:
        warn(_printable(f"{where}: {problem}"))

    for article, origin in _iter_articles(root, max_file_bytes, skip, note):
        first = origins.get(article.article_id)
        if first is not None:
            skip(origin, f"id {article.article_id!r} was already loaded from {first}")
            continue
        digest = article.content_hash
        if digest in by_hash:
            report.duplicates.append((article.article_id, by_hash[digest]))
            kept = by_hash[digest]
            warn(_printable(f"duplicate {article.article_id} ({origin}): same text as {kept} ({origins[kept]}), "
                            "indexed once"))
            continue
        by_hash[digest] = article.article_id
        origins[article.article_id] = origin
        articles.append(article)
    report.loaded = len(articles)
    return articles, report


def corpus_fingerprint(articles: list[Article]) -> str:
    """A hash over ids, texts and metadata: equal fingerprints mean an unchanged corpus."""
    h = hashlib.sha256()
    for a in sorted(articles, key=lambda a: a.article_id):
        for value in (a.article_id, a.content_hash, a.title, a.source, a.date, a.url):
            h.update((value or "").encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()


def _iter_articles(root: Path, max_file_bytes: int, skip: Notice, note: Notice) -> Iterator[tuple[Article, str]]:
    """Each article with where it was read from (a file, or file:line for a .jsonl record)."""
    if root.is_file() and not root.name.lower().endswith(TEXT_SUFFIXES + JSONL_SUFFIXES):
        kinds = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES)
        raise CorpusError(f"{root} is not a corpus: give a directory, or one file of a known kind ({kinds}).")
    files = [root] if root.is_file() else list(_walk(root, skip))
    base = root.parent if root.is_file() else root
    for file in files:
        name = str(file)
        lower = file.name.lower()
        if not _is_utf8(file.relative_to(base).as_posix()):
            skip(name, NOT_UTF8_NAME)
            continue
        try:
            info = file.stat()  # follows symlinks: a link to /dev/urandom is a device, not a file
            if not stat.S_ISREG(info.st_mode):
                skip(name, f"cannot be read: {_file_kind(info.st_mode)}, not a regular file")
                continue
            size = info.st_size
            if lower.endswith(JSONL_SUFFIXES):
                yield from _read_jsonl(file, skip, note, max_file_bytes)
                continue
            if size == 0:
                skip(name, "empty file")
                continue
            if size > max_file_bytes:
                skip(name, f"larger than the {max_file_bytes // (1024 * 1024)} MB limit ({size} bytes)")
                continue
            raw = file.read_bytes()
        except OSError as exc:  # vanished, unreadable, broken link
            skip(name, f"cannot be read ({exc.strerror or exc})")
            continue
        if b"\x00" in raw[:8192]:
            skip(name, "binary file")
            continue
        text, replaced = _decode(raw)
        not_text = _not_text(text)
        if not_text:
            skip(name, not_text)
            continue
        if replaced:
            note(name, "invalid UTF-8, undecodable bytes replaced with U+FFFD")
        article = parse_text_file(_article_id(file, base), lower, text, partial(_note_at, note, name))
        if not article.text.strip():
            skip(name, "no text")
            continue
        yield article, name


def _note_at(note: Notice, name: str, line: int | None, problem: str) -> None:
    note(name if line is None else f"{name}:{line}", problem)


def _is_utf8(name: str) -> bool:
    """False for a name holding undecodable bytes (os.fsdecode gives them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """`text` with undecodable name bytes and lone surrogates as backslash escapes: safe to print and store."""
    if _is_utf8(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")  # caf\xe9
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (JSON's "\ud800")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for is_kind, kind in kinds if is_kind(mode)), "not a file")


def _walk(root: Path, skip: Notice) -> Iterator[Path]:
    """Supported files under root in a stable order; directory symlinks are not followed (no loops).

    Depth-first with an explicit stack rather than os.walk, which recurses in Python 3.11
    and dies with RecursionError in directories nested about a thousand deep.
    """
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            skip(str(directory), f"cannot be listed ({exc.strerror or exc})")
            continue
        subdirectories = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
            except OSError:  # a symlink loop, or gone already: reading it will report why
                is_dir = is_link = False
            if is_dir:
                if is_link:
                    continue
                if not _is_utf8(entry.name):  # one warning for the directory, not one per file in it
                    skip(entry.path, NOT_UTF8_NAME)
                    continue
                subdirectories.append(Path(entry.path))
            elif entry.name.lower().endswith(TEXT_SUFFIXES + JSONL_SUFFIXES):
                yield Path(entry.path)
        stack.extend(reversed(subdirectories))


def _article_id(file: Path, base: Path) -> str:
    """The path relative to the corpus root, without suffix: the file stem for top-level files."""
    relative = file.relative_to(base).as_posix()
    suffix = next(s for s in TEXT_SUFFIXES if relative.lower().endswith(s))
    return relative[: -len(suffix)]


def _decode(raw: bytes) -> tuple[str, bool]:
    """The text with line breaks as "\\n", and whether undecodable bytes were replaced with U+FFFD."""
    try:
        text, replaced = raw.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        text, replaced = raw.decode("utf-8-sig", errors="replace"), True
    return text.replace("\r\n", "\n").replace("\r", "\n"), replaced


def _not_text(text: str, sample: int = 65_536) -> str | None:
    """Why decoded content is not prose (mostly undecodable or control characters), or None.

    The NUL test above misses binary files without zero bytes; indexing their
    replacement characters would only add garbage passages.
    """
    head = text[:sample]
    if not head:
        return None
    share = len(_NOT_TEXT_RE.findall(head)) / len(head)
    if share > NOT_TEXT_RATIO:
        return f"binary or not UTF-8 text ({share:.0%} undecodable or control characters)"
    return None


def _read_jsonl(file: Path, skip: Notice, note: Notice, max_record_bytes: int) -> Iterator[tuple[Article, str]]:
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    replaced = False
    try:
        with opener(file, "rb") as handle:  # bytes, so a bad byte can be reported rather than replaced unseen
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                where = f"{file}:{number}"
                if len(raw) > max_record_bytes:
                    skip(where, f"record larger than the {max_record_bytes // (1024 * 1024)} MB limit")
                    continue
                line, bad_bytes = _decode_line(raw, number)
                if bad_bytes and not replaced:  # once per file: a mis-encoded feed would repeat it on every line
                    replaced = True
                    note(where, "invalid UTF-8, undecodable bytes replaced with U+FFFD (later lines not reported)")
                record, problem = _parse_json(line)
                article = article_from_record(record, partial(note, where)) if problem is None else problem
                if isinstance(article, str):
                    skip(where, article)
                else:
                    yield article, where
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt .gz stream
        skip(str(file), f"cannot be read ({exc})")


def _decode_line(raw: bytes, number: int) -> tuple[str, bool]:
    """A record's text (a BOM on the first line dropped, as for .txt), and whether bytes were replaced."""
    encoding = "utf-8-sig" if number == 1 else "utf-8"
    try:
        return raw.decode(encoding), False
    except UnicodeDecodeError:
        return raw.decode(encoding, errors="replace"), True


def _parse_json(line: str) -> tuple[object, str | None]:
    """The decoded value, or why the line is not JSON.

    Beyond JSONDecodeError, json.loads raises ValueError for integers past Python's digit limit
    and RecursionError for deeply nested arrays: bad lines all the same, not crashes.
    """
    try:
        return json.loads(line), None
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON ({exc.msg})"
    except ValueError as exc:
        return None, f"malformed JSON ({str(exc).split(':')[0]})"
    except RecursionError:
        return None, "malformed JSON (nested too deeply)"
