"""POST /articles and DELETE /articles/{article_id}: change the index, behind an API key.

Each write builds a new index (see api/rebuild.py), publishes it atomically and swaps
it in. Writes run one at a time; a few may wait, and beyond that they are refused with
503 + Retry-After rather than queued without bound.

No `from __future__ import annotations` here: FastAPI must see the real body model.
"""

import asyncio
import re
import time
from typing import Annotated, Any, Self

import anyio.to_thread
from fastapi import Depends, FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from api.auth import require_key
from api.errors import ApiError
from api.reload import IndexManager
from api.schemas import MAX_SOURCE_CHARS, QUERY_TEXT, SPACE_OR_CONTROL, ErrorOut, parse_date, plain_text
from api.settings import Settings
from indexer.corpus import Article
from indexer.search import text_problem

MAX_QUEUED_WRITES = 4  # writes waiting for the one being built; more get 503
MAX_ID_CHARS = 300
MAX_TITLE_CHARS = 500
MAX_URL_CHARS = 2000
# The id goes into /articles/{article_id} paths as it is, so: no spaces (Unicode's too) or
# control characters anywhere, no '/' at either end, and no '.' or '..' segment (also
# spelled %2e), which browsers, fetch and curl resolve away ('\\' separates segments for
# them too). Explicit ranges, not \s, which regex engines (pydantic's, the fuzzer's) read
# differently; the look-ahead needs Python's engine (set on the model below).
_ID_CHAR = f"[^{SPACE_OR_CONTROL}]"
_ID_EDGE = f"[^{SPACE_OR_CONTROL}/]"
_DOT_SEGMENT = r"(?:\.|%2[eE]){1,2}"
ID_PATTERN = rf"^(?!(?:.*[/\\])?{_DOT_SEGMENT}(?:[/\\]|$)){_ID_EDGE}(?:{_ID_CHAR}*{_ID_EDGE})?$"
URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^\s\x00-\x1f\x7f]+$"  # schemes are case-insensitive
_NEWLINES = re.compile(r"\r\n?")
ARTICLES_EXAMPLE = (
    '{"articles": [{"article_id": "wire/2024/ferry", "title": "Solar ferry", "text": "A solar ferry ...", '
    '"source": "Wire", "date": "2024-05-06", "url": "https://news.example/ferry"}]}'
)


class WriteOut(BaseModel):
    index_id: str = Field(description="the index now served, which includes the change")
    added: list[str]
    replaced: list[str]
    deleted: list[str]
    text_normalised: list[str] = Field(
        default_factory=list,
        description="ids whose text was stored changed (line breaks made \\n, surrounding whitespace removed): "
        "citation offsets refer to the stored text, which GET /articles/{article_id} returns",
    )
    articles: int = Field(description="articles in the new index")
    chunks: int = Field(description="chunks (passages) in the new index")
    took_ms: float = Field(description="time to build, publish and load the new index")


def write_models(settings: Settings) -> type[BaseModel]:
    """The POST /articles body model, with this app's limits."""
    max_text, max_articles = settings.max_article_chars, settings.max_articles_per_write

    class ArticleIn(BaseModel):
        """One article to add, or to replace if its id exists."""

        model_config = ConfigDict(extra="forbid", regex_engine="python-re")  # ID_PATTERN looks ahead

        article_id: str = Field(
            min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN,
            description=f"unique id, 1-{MAX_ID_CHARS} characters without spaces (may contain '/', "
            "but no '.' or '..' segment)",
        )
        title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, pattern=QUERY_TEXT,
                           description="the headline (whitespace runs become one space)")
        text: str = Field(
            min_length=1, max_length=max_text, pattern=QUERY_TEXT,
            description=f"the article's text, 1-{max_text} characters, no control characters other than tabs "
            "and line breaks. Stored with line breaks as \\n and surrounding whitespace removed: citations "
            "are offsets into the stored text (GET /articles/{article_id})",
        )
        source: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_CHARS, pattern=QUERY_TEXT)
        date: str | None = Field(None, description="publication date, YYYY-MM-DD", json_schema_extra={"format": "date"})
        url: str | None = Field(None, max_length=MAX_URL_CHARS, pattern=URL_PATTERN, description="http(s) URL")

        @field_validator("article_id", mode="before")
        @classmethod
        def _id(cls, value: object) -> object:
            if isinstance(value, str) and (problem := id_problem(value)):
                raise ValueError(problem)
            return value

        @field_validator("title", "text", "source", mode="before")
        @classmethod
        def _text(cls, value: object, info: ValidationInfo) -> object:
            # For source also as /search's source filter requires, or it could not be found.
            return plain_text(value, str(info.field_name))

        @field_validator("url")
        @classmethod
        def _url(cls, value: str | None) -> str | None:
            # Python's engine (set above for ID_PATTERN) lets "$" match before a final "\n".
            if value is not None and not re.fullmatch(URL_PATTERN.strip("^$"), value):
                raise ValueError("url must be an http:// or https:// URL without spaces or control characters")
            return value

        @field_validator("date", mode="before")
        @classmethod
        def _date(cls, value: object) -> object:
            parsed = parse_date(value, "date")
            return parsed.isoformat() if parsed is not None else None  # type: ignore[union-attr]

        def to_article(self) -> Article:
            # The same clean-up as the corpus loader, so stored text and citations agree.
            text = _NEWLINES.sub("\n", self.text).strip()
            source = self.source.strip() if self.source else None
            return Article(self.article_id, " ".join(self.title.split()), text, source, self.date, self.url)

    class ArticlesIn(BaseModel):
        """POST /articles body."""

        model_config = ConfigDict(extra="forbid")

        articles: list[ArticleIn] = Field(
            min_length=1, max_length=max_articles, description=f"1-{max_articles} articles, each id once"
        )

        @model_validator(mode="after")
        def _unique(self) -> Self:
            seen: set[str] = set()
            for article in self.articles:
                if article.article_id in seen:
                    raise ValueError(f"article_id {article.article_id!r} appears twice; send each article once.")
                seen.add(article.article_id)
            return self

    return ArticlesIn


def id_problem(article_id: str) -> str | None:
    """Why `article_id` cannot be opened at /articles/{article_id}, or None (ID_PATTERN in words)."""
    if problem := text_problem(article_id, "article_id"):
        return problem
    if space := next((char for char in article_id if char.isspace()), None):
        return f"article_id contains U+{ord(space):04X}, a space character; ids have no spaces: use '-' or '_'."
    if any(re.fullmatch(_DOT_SEGMENT, part) for part in re.split(r"[/\\]", article_id)):
        return (
            f"article_id {article_id[:60]!r} has a '.' or '..' segment, which browsers and HTTP clients remove "
            "from URLs (/articles/a/../b opens /articles/b), so it could not be opened; choose another id."
        )
    return None


def write_rules(settings: Settings) -> dict[str, str]:
    """What each write field must be, for error messages (see api/errors.py)."""
    return {
        "articles": f"a list of 1 to {settings.max_articles_per_write} articles",
        "article_id": f"1 to {MAX_ID_CHARS} characters with no spaces or control characters, not starting or "
        "ending with '/', without a '.' or '..' segment",
        "title": f"text of 1 to {MAX_TITLE_CHARS} characters",
        "text": f"text of 1 to {settings.max_article_chars} characters",
        "date": "a date as YYYY-MM-DD",
        "url": f"an http:// or https:// URL (any case) of at most {MAX_URL_CHARS} characters, without spaces",
    }


class ArticleWriter:
    """Applies writes one at a time, in arrival order."""

    def __init__(self, manager: IndexManager, retry_after: int) -> None:
        self.manager = manager
        self.retry_after = retry_after
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def apply(self, upserts: list[Article], deletes: list[str]) -> dict[str, Any]:
        """Build, publish and serve the index with this change; the write's outcome."""
        from api.rebuild import Change, apply_change

        if self._waiting >= MAX_QUEUED_WRITES:
            raise ApiError(
                503, "writes_busy", f"{MAX_QUEUED_WRITES} writes are already waiting; retry in {self.retry_after} s.",
                headers={"Retry-After": str(self.retry_after)},
            )
        started = time.perf_counter()
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            change = Change(upserts, deletes)
            applied = await anyio.to_thread.run_sync(apply_change, self.manager.root, self.manager.embedder, change)
            await self.manager.refresh()
            served = self.manager.holder.get().index_id if self.manager.holder.loaded else None
            if served != applied.index_id:
                raise ApiError(
                    503, "index_unavailable",
                    f"The change was published as index {applied.index_id} but is not served: "
                    f"{self.manager.last_error or 'another index was published meanwhile'}.",
                )
        finally:
            self._lock.release()
        return {
            "index_id": applied.index_id, "added": applied.added, "replaced": applied.replaced,
            "deleted": applied.deleted, "articles": applied.articles, "chunks": applied.chunks,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        }


def add_write_routes(
    app: FastAPI, settings: Settings, manager: IndexManager, errors: dict[int | str, Any]
) -> ArticleWriter:
    """Register POST /articles and DELETE /articles/{article_id} on `app`; the writer they share."""
    from api.rebuild import EmptyIndex, UnknownArticle

    ArticlesIn = write_models(settings)
    writer = ArticleWriter(manager, settings.retry_after_seconds)
    keys = [settings.api_key] if settings.api_key is not None else []
    guard = require_key(
        keys, "Adding or deleting articles",
        disabled="Writes are disabled on this server: set NEWSDESK_API_KEY to enable POST and DELETE /articles.",
    )
    responses: dict[int | str, Any] = {
        **errors,
        401: {"model": ErrorOut, "description": "No API key, or a wrong one"},
        403: {"model": ErrorOut, "description": "Writes are disabled (no NEWSDESK_API_KEY on the server)"},
        409: {"model": ErrorOut, "description": "The change would leave the index empty"},
    }

    async def run(upserts: list[Article], deletes: list[str]) -> dict[str, Any]:
        try:
            return await writer.apply(upserts, deletes)
        except UnknownArticle as exc:
            raise ApiError(404, "article_not_found", str(exc)) from None
        except EmptyIndex as exc:
            raise ApiError(409, "index_would_be_empty", str(exc)) from None

    @app.post("/articles", response_model=WriteOut, tags=["articles"], dependencies=[Depends(guard)],
              responses=responses)
    async def add_articles(body: ArticlesIn) -> dict[str, Any]:  # type: ignore[valid-type]
        """Add articles, or replace those whose id exists; the response comes once they are searchable."""
        sent = {a.article_id: a.text for a in body.articles}  # type: ignore[attr-defined]
        upserts = [a.to_article() for a in body.articles]  # type: ignore[attr-defined]
        outcome = await run(upserts, [])
        # Offsets are into the stored text: name the articles whose text the clean-up changed.
        outcome["text_normalised"] = [a.article_id for a in upserts if a.text != sent[a.article_id]]
        return outcome

    @app.delete(
        "/articles/{article_id:path}", response_model=WriteOut, tags=["articles"], dependencies=[Depends(guard)],
        responses={**responses, 404: {"model": ErrorOut, "description": "No article with this id"}},
    )
    async def delete_article(article_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]) -> dict[str, Any]:
        """Delete one article; the response comes once it no longer appears in results."""
        return await run([], [article_id])

    return writer
