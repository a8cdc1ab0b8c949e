"""Request and response models of the HTTP API (they are what /docs shows).

Request models carry limits from `Settings`, so they are built per app by
`request_models(settings)`; response models are fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from api.settings import Settings
from indexer.search import CONTROL_CHARS, EMPTY_SOURCE, MODES, text_problem

ModeName = Literal["hybrid", "dense", "lexical"]
assert set(MODES) == {"hybrid", "dense", "lexical"}  # keep the API's Literal in step with the indexer

FILTERS = ("source", "date_from", "date_to")
# "_=<timestamp>" is what jQuery's cache: false and similar clients add to defeat caches: not a
# typo of a parameter, so it is the one unknown query parameter let through.
CACHE_BUSTER = "_"


def _without_cache_buster(params: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in params.items() if name != CACHE_BUSTER}
DEFAULT_K = 10
DEFAULT_ASK_K = 5
MAX_SOURCE_CHARS = 200
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Unanchored: at least one character that is neither whitespace nor a control character. In
# the schema too, so clients (and the fuzzer) know that "   " is not a query. Spelled out
# (every character str.strip removes, plus C0, DEL and C1 controls) rather than \S, which
# pydantic's regex engine, JavaScript's and Python's each read differently (e.g. \x85, \x1c).
SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
HAS_TEXT = rf"[^{SPACE_OR_CONTROL}]"
# Queries also hold no control character anywhere (tabs and line breaks are fine), as
# indexer.search.text_problem checks; it also refuses unpaired surrogates (JSON's "\ud800"),
# which no pattern can state (Rust's regex engine has no surrogates). The leading run is the
# whitespace that is not a control character: disjoint from HAS_TEXT, so a backtracking
# engine (a client's Python or JavaScript) matches in linear time.
_LEADING_SPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_EMPTY = "not all whitespace, invisible or combining characters"
QUERY_TEXT = rf"^[{_LEADING_SPACE}]*{HAS_TEXT}[^{CONTROL_CHARS}]*$"


# ---- responses ------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_parameter, article_not_found")
    message: str = Field(description="what is wrong and how to fix it, naming the field and the limit")


class ErrorOut(BaseModel):
    """The one error shape, for every 4xx and 5xx."""

    error: ErrorDetail


class Span(BaseModel):
    start: int
    end: int


class CitationOut(BaseModel):
    article_id: str
    title: str
    source: str | None
    date: str | None
    url: str | None
    start: int = Field(description="character offset of the passage in the article's text")
    end: int = Field(description="end offset (exclusive): article.text[start:end] is the passage")


class HitOut(BaseModel):
    rank: int
    score: float
    chunk_id: str
    text: str
    citation: CitationOut
    highlights: list[Span] = Field(description="offsets, in the article's text, of the query's terms in the passage")


class SearchOut(BaseModel):
    query: str
    mode: ModeName
    took_ms: float = Field(description="time spent searching inside the service, in milliseconds")
    hits: list[HitOut]


class AnswerCitationOut(CitationOut):
    quote: str = Field(description="the cited text, article.text[start:end]")


class AskOut(BaseModel):
    # Extra fields from the Q&A engine pass through unchanged.
    model_config = ConfigDict(extra="allow")

    question: str
    answer: str
    answerable: bool
    confidence: float
    citations: list[AnswerCitationOut]
    passages: list[HitOut]


class SpanOut(BaseModel):
    start: int
    end: int
    quote: str = Field(description="article.text[start:end]")
    context_start: int
    context_end: int
    context: str = Field(description="article.text[context_start:context_end]: the quote with words around it")


class ArticleOut(BaseModel):
    article_id: str
    title: str
    source: str | None
    date: str | None
    url: str | None
    text: str
    span: SpanOut | None = Field(None, description="present when start and end were given")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    index_id: str = Field(description="the index being served")
    model_id: str
    articles: int
    chunks: int
    loaded_at: str = Field(description="when this index was swapped in (ISO 8601, UTC)")
    last_reload_error: str | None = Field(
        description="why the latest published index was refused (the one above keeps serving); null when none"
    )


# ---- requests -------------------------------------------------------------------------------------


def parse_date(value: object, field: str) -> object:
    """Only YYYY-MM-DD: pydantic alone would also take timestamps like 1700000000."""
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise ValueError(f"{field} must be a date as YYYY-MM-DD, got {str(value)[:40]!r}.")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{field} must be a real calendar date as YYYY-MM-DD, got {value!r}.") from None


def source_field(description: str, **extra: Any) -> Any:
    """The optional source filter's field (GET and POST /search)."""
    return Field(None, min_length=1, max_length=MAX_SOURCE_CHARS, pattern=QUERY_TEXT, description=description, **extra)


def _or_empty(schema: dict[str, Any]) -> None:
    """A GET filter's schema also takes the empty string (it means no filter)."""
    schema["anyOf"] = [*schema.get("anyOf", []), {"type": "string", "maxLength": 0}]


def _not_blank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} is empty; type some words.")
    return value.strip()


def _json_number(value: object, field: str, maximum: int) -> object:
    """A JSON body's true/false and strings are not numbers, though pydantic would read them so.

    5.0 stays accepted: JSON Schema counts it as an integer, and /docs's schema is the contract.
    (Query parameters are text by nature: GET /search?k=5 is read by pydantic as usual.)
    """
    rule = f"{field} must be a whole number from 1 to {maximum}"
    if isinstance(value, bool):
        raise ValueError(f"{rule}, got {str(value).lower()}.")
    if isinstance(value, str):
        shown = repr(value) if len(value) <= 40 else f"{len(value)} characters"
        raise ValueError(f"{rule}, got the JSON string {shown}; send the number without quotes.")
    return value


def plain_text(value: object, field: str) -> object:
    """Refuse control characters (tabs and line breaks are fine) and unpaired surrogates."""
    if isinstance(value, str) and (problem := text_problem(value, field)):
        raise ValueError(problem)
    return value


@dataclass(frozen=True)
class RequestModels:
    """The request models of one app, with that app's limits."""

    search_query: type[BaseModel]
    search_body: type[BaseModel]
    ask_body: type[BaseModel]
    article_query: type[BaseModel]
    rules: dict[str, str]
    examples: dict[str, str]


def request_models(settings: Settings) -> RequestModels:
    """Build the request models for `settings` (limits show in /docs as maxLength, maximum...)."""
    max_q, max_k = settings.max_query_chars, settings.max_k

    class SearchFields(BaseModel):
        q: str = Field(min_length=1, max_length=max_q, pattern=QUERY_TEXT,
                       description=f"what to search for (1-{max_q} characters; {NOT_EMPTY})")
        k: int = Field(DEFAULT_K, ge=1, le=max_k, description=f"how many passages (1-{max_k})")
        mode: ModeName = Field("hybrid", description="hybrid (both), dense (meaning) or lexical (words, BM25)")
        source: str | None = source_field("only this source (case-insensitive)")
        date_from: date | None = Field(None, description="only articles dated on or after, YYYY-MM-DD")
        date_to: date | None = Field(None, description="only articles dated on or before, YYYY-MM-DD")

        @field_validator("q", "source", mode="before")
        @classmethod
        def _text(cls, value: object, info: ValidationInfo) -> object:
            return plain_text(value, str(info.field_name))

        @field_validator("q")
        @classmethod
        def _q(cls, value: str) -> str:
            return _not_blank(value, "q")

        @field_validator("source")
        @classmethod
        def _source(cls, value: str | None) -> str | None:
            if value is not None and not value.strip():
                raise ValueError(EMPTY_SOURCE)
            return value.strip() if value is not None else None

        @field_validator("date_from", "date_to", mode="before")
        @classmethod
        def _dates(cls, value: object, info: Any) -> object:
            return parse_date(value, info.field_name)

        @model_validator(mode="after")
        def _range(self) -> SearchFields:
            if self.date_from and self.date_to and self.date_from > self.date_to:
                raise ValueError(
                    f"date_from ({self.date_from}) is after date_to ({self.date_to}); swap them or widen the range."
                )
            return self

    class SearchQuery(SearchFields):
        """GET /search query parameters; an unknown one (a typo like date_form) is refused.

        An empty filter (source=, as an HTML form sends a field left blank) means no filter.
        """

        model_config = ConfigDict(extra="forbid")

        source: str | None = source_field("only this source (case-insensitive); empty: every source",
                                          json_schema_extra=_or_empty)
        date_from: date | None = Field(None, description="only articles dated on or after, YYYY-MM-DD; empty: no limit",
                                       json_schema_extra=_or_empty)
        date_to: date | None = Field(None, description="only articles dated on or before, YYYY-MM-DD; empty: no limit",
                                     json_schema_extra=_or_empty)

        @model_validator(mode="before")
        @classmethod
        def _empty_filters(cls, data: object) -> object:
            if isinstance(data, dict):
                return {name: value for name, value in _without_cache_buster(data).items()
                        if not (name in FILTERS and value == "")}
            return data

    class SearchBody(SearchFields):
        """POST /search body: the same fields as GET, as a JSON object."""

        model_config = ConfigDict(extra="forbid")

        @field_validator("k", mode="before")
        @classmethod
        def _k(cls, value: object) -> object:
            return _json_number(value, "k", max_k)

    class AskBody(BaseModel):
        """POST /ask body."""

        model_config = ConfigDict(extra="forbid")

        question: str = Field(min_length=1, max_length=max_q, pattern=QUERY_TEXT,
                              description=f"a question (1-{max_q} characters; {NOT_EMPTY})")
        k: int = Field(DEFAULT_ASK_K, ge=1, le=max_k, description=f"how many passages to consider (1-{max_k})")

        @field_validator("k", mode="before")
        @classmethod
        def _k(cls, value: object) -> object:
            return _json_number(value, "k", max_k)

        @field_validator("question", mode="before")
        @classmethod
        def _text(cls, value: object) -> object:
            return plain_text(value, "question")

        @field_validator("question")
        @classmethod
        def _question(cls, value: str) -> str:
            return _not_blank(value, "question")

    class ArticleQuery(BaseModel):
        """GET /articles/{article_id} query parameters: an optional cited span (an unknown parameter is refused)."""

        model_config = ConfigDict(extra="forbid")

        start: int | None = Field(None, ge=0, description="start offset of a cited span (with end)")
        end: int | None = Field(None, ge=1, description="end offset of a cited span (with start)")
        context: int = Field(
            settings.article_context_chars, ge=0, le=10_000, description="characters of context on each side"
        )

        @model_validator(mode="before")
        @classmethod
        def _cache_buster(cls, data: object) -> object:
            return _without_cache_buster(data) if isinstance(data, dict) else data

        @model_validator(mode="after")
        def _pair(self) -> ArticleQuery:
            if (self.start is None) != (self.end is None):
                raise ValueError("start and end go together: give both (a citation's offsets) or neither.")
            if self.start is not None and self.end is not None and self.start >= self.end:
                raise ValueError(f"start ({self.start}) must be less than end ({self.end}).")
            return self

    rules = {
        "q": f"text of 1 to {max_q} characters",
        "question": f"text of 1 to {max_q} characters",
        "k": f"a whole number from 1 to {max_k}",
        "mode": "one of: " + ", ".join(MODES),
        "source": f"a source name of 1 to {MAX_SOURCE_CHARS} characters",
        "date_from": "a date as YYYY-MM-DD",
        "date_to": "a date as YYYY-MM-DD",
        "start": "a character offset, 0 or more",
        "end": "a character offset, 1 or more",
        "context": "a number of characters from 0 to 10000",
    }
    examples = {
        "/search": '{"q": "electric cars", "k": 10, "mode": "hybrid"} '
        "(optional: source, date_from, date_to as YYYY-MM-DD)",
        "/ask": '{"question": "Which company did Daimler team up with for Denza?", "k": 5}',
    }
    return RequestModels(SearchQuery, SearchBody, AskBody, ArticleQuery, rules, examples)
