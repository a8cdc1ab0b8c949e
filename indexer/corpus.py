"""Load a folder of news articles (.txt, .md, .html, .jsonl[.gz]) into `Article` records.

Nothing in a corpus may crash a run: unreadable, binary, empty or oversized files
are skipped with a warning that names them, and the caller gets counts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

from indexer.errors import CorpusError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TITLE_CHARS = 150
NOT_TEXT_RATIO = 0.3  # above this share of undecodable or control characters, a file is not text

# A date's shape (month 01-12, day 01-31), then whitespace or the end: "date 2021-02-30 Wire" is a
# header with an impossible date; "date 1234-56-78 was the deadline" and "date 2021-02-3012" are not.
_HEADER_RE = re.compile(r"^\s*date\s+(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))(?:\s+(.*?))?\s*$")
_BULLET_RE = re.compile(r"^\s*(?:[-*\u2022]\s+|#+\s*)")
_SPACES_RE = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES_RE = re.compile(r"\n\s*\n+")
_NOT_TEXT_RE = re.compile(r"[\x00-\x08\x0e-\x1f\ufffd]")  # control characters other than tabs and breaks, U+FFFD


@dataclass(frozen=True)
class Article:
    """One news article; citations are character offsets into `text`."""

    article_id: str
    title: str
    text: str
    source: str | None = None
    date: str | None = None
    url: str | None = None

    @property
    def content_hash(self) -> str:
        """Hash of the whitespace-normalised text: equal hashes mean duplicate articles."""
        normalised = " ".join(self.text.split())
        return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


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
    ids: set[str] = set()

    def skip(name: str, reason: str) -> None:
        report.skipped.append((name, reason))
        warn(f"skipped {name}: {reason}")

    for article in _iter_articles(root, max_file_bytes, skip):
        if article.article_id in ids:
            skip(article.article_id, "an article with this id was already loaded")
            continue
        digest = article.content_hash
        if digest in by_hash:
            report.duplicates.append((article.article_id, by_hash[digest]))
            warn(f"duplicate {article.article_id}: same text as {by_hash[digest]}, indexed once")
            continue
        by_hash[digest] = article.article_id
        ids.add(article.article_id)
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


def _iter_articles(root: Path, max_file_bytes: int, skip: Callable[[str, str], None]) -> Iterator[Article]:
    if root.is_file() and not root.name.lower().endswith(TEXT_SUFFIXES + JSONL_SUFFIXES):
        kinds = ", ".join(TEXT_SUFFIXES + JSONL_SUFFIXES)
        raise CorpusError(f"{root} is not a corpus: give a directory, or one file of a known kind ({kinds}).")
    files = [root] if root.is_file() else list(_walk(root, skip))
    base = root.parent if root.is_file() else root
    for file in files:
        name = str(file)
        lower = file.name.lower()
        try:
            size = file.stat().st_size
            if lower.endswith(JSONL_SUFFIXES):
                yield from _read_jsonl(file, skip, max_file_bytes)
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
        text = _decode(raw, name, skip)
        not_text = _not_text(text)
        if not_text:
            skip(name, not_text)
            continue
        article_id = _article_id(file, base)
        if lower.endswith((".html", ".htm")):
            article = _parse_html(article_id, text)
        elif lower.endswith((".md", ".markdown")):
            article = _parse_markdown(article_id, text)
        else:
            article = _parse_txt(article_id, text)
        if not article.text.strip():
            skip(name, "no text")
            continue
        yield article


def _walk(root: Path, skip: Callable[[str, str], None]) -> Iterator[Path]:
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
                if not is_link:
                    subdirectories.append(Path(entry.path))
            elif entry.name.lower().endswith(TEXT_SUFFIXES + JSONL_SUFFIXES):
                yield Path(entry.path)
        stack.extend(reversed(subdirectories))


def _article_id(file: Path, base: Path) -> str:
    """The path relative to the corpus root, without suffix: the file stem for top-level files."""
    relative = file.relative_to(base).as_posix()
    suffix = next(s for s in TEXT_SUFFIXES if relative.lower().endswith(s))
    return relative[: -len(suffix)]


def _decode(raw: bytes, name: str, skip: Callable[[str, str], None]) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("%s: invalid UTF-8, undecodable bytes replaced with U+FFFD", name)
        text = raw.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


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


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = _BULLET_RE.sub("", line).strip()
        if line:
            if len(line) <= MAX_TITLE_CHARS:
                return line
            cut = line[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]
            return cut.rstrip(" ,;:") + "…"
    return ""


def _parse_txt(article_id: str, text: str) -> Article:
    first, _, rest = text.partition("\n")
    match = _HEADER_RE.match(first)
    day = source = None
    if match:
        day, source = _iso_date(match.group(1)), match.group(2) or None
        text = rest
        if day is None:  # " date 2021-02-30 Wire": a header all the same, with an impossible date
            log.warning("%s: header date %s is not a calendar date; the article is indexed undated",
                        article_id, match.group(1))
    body = text.strip()
    return Article(article_id, _first_line_title(body) or article_id, body, source, day)


def _parse_markdown(article_id: str, text: str) -> Article:
    meta: dict[str, str] = {}
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            for line in text[4:end].splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    meta[key.strip().lower()] = value.strip().strip("\"'")
            text = text[end + 4 :]
    body = text.strip()
    heading = next((m.group(1).strip() for m in re.finditer(r"^#\s+(.+)$", body, re.M)), None)
    title = meta.get("title") or heading or _first_line_title(body) or article_id
    return Article(
        article_id,
        title,
        body,
        meta.get("source"),
        _iso_date(meta.get("date") or meta.get("publish_date")),
        meta.get("url"),
    )


class _HTMLText(HTMLParser):
    """Visible text of a page, block elements on their own lines; script/style dropped."""

    BLOCKS = {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
        "tr", "table", "section", "article", "header", "footer", "blockquote", "pre", "hr",
    }
    HIDDEN = {"script", "style", "noscript", "template", "head", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.meta: dict[str, str] = {}
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            a = {k: v or "" for k, v in attrs}
            key = (a.get("property") or a.get("name") or "").lower()
            if key and a.get("content"):
                self.meta[key] = a["content"]
        elif tag == "link":
            a = {k: v or "" for k, v in attrs}
            if a.get("rel") == "canonical" and a.get("href"):
                self.meta.setdefault("og:url", a["href"])
        if tag in self.HIDDEN:
            self._hidden += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            self.parts.append(data)


def _parse_html(article_id: str, text: str) -> Article:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    lines = (_SPACES_RE.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    body = _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()
    meta = parser.meta
    title = " ".join(parser.title.split()) or meta.get("og:title") or _first_line_title(body) or article_id
    return Article(
        article_id,
        title,
        body,
        meta.get("og:site_name"),
        _iso_date(meta.get("article:published_time") or meta.get("date")),
        meta.get("og:url"),
    )


def _read_jsonl(file: Path, skip: Callable[[str, str], None], max_record_bytes: int) -> Iterator[Article]:
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rt", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{file}:{number}"
                if len(line) > max_record_bytes:  # characters: a cheap lower bound on the bytes
                    skip(where, f"record larger than the {max_record_bytes // (1024 * 1024)} MB limit")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    skip(where, f"malformed JSON ({exc.msg})")
                    continue
                article = _article_from_record(record)
                if isinstance(article, str):
                    skip(where, article)
                else:
                    yield article
    except (OSError, EOFError) as exc:
        skip(str(file), f"cannot be read ({exc})")


def _article_from_record(record: object) -> Article | str:
    """An Article, or the reason the record cannot be one."""
    if not isinstance(record, dict):
        return "not a JSON object"
    raw_id = record.get("_id", record.get("id"))
    if raw_id is None or str(raw_id).strip() == "":
        return "no '_id' or 'id' field"
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return "no text"
    text = text.replace("\r\n", "\n").strip()
    title = record.get("title")
    title = title.strip() if isinstance(title, str) and title.strip() else _first_line_title(text)
    day = record.get("date") or record.get("publish_date")
    return Article(
        str(raw_id).strip(),
        title,
        text,
        _str_or_none(record.get("source")),
        _iso_date(day if isinstance(day, str) else None),
        _str_or_none(record.get("url")),
    )


def _str_or_none(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _iso_date(value: str | None) -> str | None:
    """YYYY-MM-DD from an ISO date or datetime string; None when it is not one."""
    if not value:
        return None
    value = value.strip()
    if re.match(r"^\d{4}/\d{1,2}/\d{1,2}", value):  # 2020/01/03, as in RealTimeQA
        year, month, day = value[:10].split("/")[:3]
        value = f"{year}-{int(month):02d}-{int(day.split()[0][:2]):02d}"
    for parse in (date.fromisoformat, lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).date()):
        try:
            return parse(value).isoformat()  # type: ignore[no-untyped-call]
        except ValueError:
            continue
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        return None
