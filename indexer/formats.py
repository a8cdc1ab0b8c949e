"""What one corpus file holds: `Article`, and the .txt / .md / .html parsers and .jsonl records.

`indexer.corpus` finds, reads and decodes the files and reports what it skips; this module
turns one file's text (or one JSON record) into an Article. A bad optional field (a date
that is not a date, a url that is not http(s)) is dropped with a warning and the article kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from html.parser import HTMLParser

MAX_TITLE_CHARS = 150

# A date's shape (month 01-12, day 01-31), then whitespace or the end: "date 2021-02-30 Wire" is a
# header with an impossible date; "date 1234-56-78 was the deadline" and "date 2021-02-3012" are not.
_HEADER_RE = re.compile(r"^\s*date\s+(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))(?:\s+(.*?))?\s*$")
_BULLET_RE = re.compile(r"^\s*(?:[-*\u2022]\s+|#+\s*)")
_SPACES_RE = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES_RE = re.compile(r"\n\s*\n+")
# What POST /articles accepts as a url (api/writes.py URL_PATTERN): a corpus may not store what the API refuses.
_URL_RE = re.compile(r"[hH][tT][tT][pP][sS]?://[^\s\x00-\x1f\x7f]+")  # not re.I, which lets "ſ" be "s"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # what a /search source filter refuses (and tabs, breaks)
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}

# (line, problem) in the file being parsed; line None when the problem is not on one line.
LineNotice = Callable[[int | None, str], None]


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


def parse_text_file(article_id: str, lower_name: str, text: str, note: LineNotice) -> Article:
    """The article in one .txt, .md or .html file's decoded text (by the file's lower-cased name)."""
    if lower_name.endswith((".html", ".htm")):
        return _parse_html(article_id, text, note)
    if lower_name.endswith((".md", ".markdown")):
        return _parse_markdown(article_id, text, note)
    return _parse_txt(article_id, text, note)


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = _BULLET_RE.sub("", line).strip()
        if line:
            if len(line) <= MAX_TITLE_CHARS:
                return line
            cut = line[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]
            return cut.rstrip(" ,;:") + "…"
    return ""


def _parse_txt(article_id: str, text: str, note: LineNotice) -> Article:
    first, _, rest = text.partition("\n")
    match = _HEADER_RE.match(first)
    day = source = None
    if match:
        # " date 2021-02-30 Wire" is a header all the same, with an impossible date: warned, indexed undated.
        day, source = _checked_date(match.group(1), partial(note, 1), "header date"), match.group(2) or None
        text = rest
    body = text.strip()
    return Article(article_id, _first_line_title(body) or article_id, body, source, day)


def _parse_markdown(article_id: str, text: str, note: LineNotice) -> Article:
    meta: dict[str, str] = {}
    lines: dict[str, int] = {}  # front-matter key -> its line in the file, for warnings
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            for number, line in enumerate(text[4:end].split("\n"), 2):
                key, sep, value = line.partition(":")
                if sep:
                    meta[key.strip().lower()] = value.strip().strip("\"'")
                    lines[key.strip().lower()] = number
            text = text[end + 4 :]
    body = text.strip()
    heading = next((m.group(1).strip() for m in re.finditer(r"^#\s+(.+)$", body, re.M)), None)
    title = meta.get("title") or heading or _first_line_title(body) or article_id
    date_key = "date" if meta.get("date") else "publish_date"
    return Article(
        article_id,
        title,
        body,
        meta.get("source") or None,
        _checked_date(meta.get(date_key), partial(note, lines.get(date_key)), date_key),
        _checked_url(meta.get("url"), partial(note, lines.get("url"))),
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


def _parse_html(article_id: str, text: str, note: LineNotice) -> Article:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    lines = (_SPACES_RE.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    body = _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()
    meta = parser.meta
    title = " ".join(parser.title.split()) or meta.get("og:title") or _first_line_title(body) or article_id
    date_key = "article:published_time" if meta.get("article:published_time") else "date"
    return Article(
        article_id,
        title,
        body,
        meta.get("og:site_name"),
        _checked_date(meta.get(date_key), partial(note, None), f"<meta> {date_key}"),
        _checked_url(meta.get("og:url"), partial(note, None)),
    )


def article_from_record(record: object, note: Callable[[str], None]) -> Article | str:
    """An Article, or the reason the record cannot be one; `note` hears of fields dropped from it."""
    if not isinstance(record, dict):
        return "not a JSON object"
    raw_id = record.get("_id", record.get("id"))
    if raw_id is None or str(raw_id).strip() == "":
        return "no '_id' or 'id' field"
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):  # {"a": 1} would become "{'a': 1}"
        return f"id is {_JSON_TYPES.get(type(raw_id), 'not a string')}; give a string or an integer"
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return "no text"
    date_key = "date" if record.get("date") else "publish_date"
    used = {"id": str(raw_id), "text": text, date_key: record.get(date_key),
            **{key: record.get(key) for key in ("title", "source", "url")}}
    for key, value in used.items():
        if isinstance(value, str) and (problem := _surrogate_problem(value, key)):
            return problem
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()  # line breaks as .txt files get them
    return Article(
        str(raw_id).strip(),
        _optional_text(record.get("title"), "title", note) or _first_line_title(text),
        text,
        _plain_source(_optional_text(record.get("source"), "source", note), note),
        _checked_date(record.get(date_key), note, date_key),
        _checked_url(record.get("url"), note),
    )


def _plain_source(source: str | None, note: Callable[[str], None]) -> str | None:
    """The source, or None (with a warning) when it holds control characters: no search filter could name it."""
    if source is not None and _CONTROL_RE.search(source):
        note(f"source {_shown(source)} contains control characters; the article is indexed without a source")
        return None
    return source


def _surrogate_problem(value: str, field: str) -> str | None:
    """Why `value` cannot be hashed or stored (half of a UTF-16 surrogate pair, JSON's "\\ud800"), or None.

    Not indexer.search.text_problem: that module imports this one (and FAISS), and it also
    refuses control characters, which article text may hold.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{field} contains U+{ord(value[exc.start]):04X}, half of a UTF-16 surrogate pair, which is not text"
    return None


def _optional_text(value: object, field: str, note: Callable[[str], None]) -> str | None:
    """A stripped string, or None: absent, empty, or (with a warning) not a string."""
    if isinstance(value, str):
        return value.strip() or None
    if value is not None:
        note(f"{field} is {_JSON_TYPES.get(type(value), 'not a string')}, not a string; treated as missing")
    return None


def _checked_date(value: object, note: Callable[[str], None], field: str = "date") -> str | None:
    """YYYY-MM-DD, or None: absent, or (with a warning) not a date; the article is kept either way."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    day = _iso_date(value) if isinstance(value, str) else None
    if day is None:
        note(f"{field} {_shown(value)} is not a calendar date; the article is indexed undated")
    return day


def _checked_url(value: object, note: Callable[[str], None]) -> str | None:
    """An http(s) URL, or None: absent, or (with a warning) anything else; the article is kept either way."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and _URL_RE.fullmatch(value.strip()):
        return value.strip()
    note(f"url {_shown(value)} is not an http:// or https:// URL; the article is indexed without it")
    return None


def _shown(value: object, limit: int = 80) -> str:
    """A field's value for a warning: quoted, and cut short (a bad field may be megabytes long)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _iso_date(value: str | None) -> str | None:
    """YYYY-MM-DD from an ISO date or datetime string; None when it is not one."""
    if not value:
        return None
    value = value.strip()
    slashed = re.match(r"(\d{4})/(\d{1,2})/(\d{1,2})", value)  # 2020/01/03, as in RealTimeQA
    if slashed:  # the groups, not a split of value[:10], which gave int("1a") for "2020/1/1a"
        year, month, day = slashed.groups()
        value = f"{year}-{int(month):02d}-{int(day):02d}"
    for parse in (date.fromisoformat, lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).date()):
        try:
            return parse(value).isoformat()  # type: ignore[no-untyped-call]
        except ValueError:
            continue
    try:
        return date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        return None
